/**
 * An independent libpcap reader for tests, written from the file-format description
 * (tcpdump.org pcap-savefile), not from src/net/pcap.ts: it accepts both byte orders and both
 * the microsecond and nanosecond magics.
 */
export interface PcapFile {
  byteOrder: 'le' | 'be';
  nanosecond: boolean;
  versionMajor: number;
  versionMinor: number;
  thiszone: number;
  sigfigs: number;
  snaplen: number;
  linkType: number;
  records: PcapRecord[];
}

export interface PcapRecord {
  tsSec: number;
  tsFrac: number;
  inclLen: number;
  origLen: number;
  data: Uint8Array;
}

export function readPcap(bytes: Uint8Array): PcapFile {
  if (bytes.length < 24) throw new Error(`pcap: ${bytes.length} bytes is shorter than the global header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicLe = dv.getUint32(0, true);
  let le: boolean;
  let nanosecond: boolean;
  if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) {
    le = true;
    nanosecond = magicLe === 0xa1b23c4d;
  } else {
    const magicBe = dv.getUint32(0, false);
    if (magicBe !== 0xa1b2c3d4 && magicBe !== 0xa1b23c4d) throw new Error(`pcap: bad magic 0x${magicLe.toString(16)}`);
    le = false;
    nanosecond = magicBe === 0xa1b23c4d;
  }
  const u32 = (o: number): number => dv.getUint32(o, le);
  const file: PcapFile = {
    byteOrder: le ? 'le' : 'be',
    nanosecond,
    versionMajor: dv.getUint16(4, le),
    versionMinor: dv.getUint16(6, le),
    thiszone: dv.getInt32(8, le),
    sigfigs: u32(12),
    snaplen: u32(16),
    linkType: u32(20),
    records: [],
  };
  let o = 24;
  while (o < bytes.length) {
    if (o + 16 > bytes.length) throw new Error(`pcap: truncated record header at ${o}`);
    const inclLen = u32(o + 8);
    if (o + 16 + inclLen > bytes.length) throw new Error(`pcap: truncated record data at ${o}`);
    file.records.push({
      tsSec: u32(o),
      tsFrac: u32(o + 4),
      inclLen,
      origLen: u32(o + 12),
      data: bytes.slice(o + 16, o + 16 + inclLen),
    });
    o += 16 + inclLen;
  }
  return file;
}
