/**
 * What the endpoint's functions need from the link beyond config and BAR decoding:
 *
 * - A requester per function, so each function's DMA, MSI-X writes and Messages carry its own
 *   Requester ID (bus:dev.fn, bus/dev captured from CfgWr0) and follow its own Device Control
 *   settings (MPS, MRRS, Extended/10-bit tags, completion timeout). They share the link's
 *   ordering queues; their completions are routed back by Requester ID. A function's requester is
 *   rebuilt, when idle, after software changes those settings.
 * - Error detection routed to the function's AER/Device Status (§6.2): malformed TLPs the link
 *   dropped, requests this device answers with UR, poisoned writes, and the requester's
 *   completion errors; the error Message (ERR_COR/NONFATAL/FATAL), if the function's enables
 *   ask for one, goes to the root complex.
 */
import { errorMessage, silentLogger, type Clock, type Logger, TlpwireError } from '../core/index.js';
import type { ErrorReport, PciDevice, PciFunction } from '../pci/index.js';
import { CPL_TIMEOUT_RANGES_NS, MSG_CODE, MSG_ROUTING, PCI_EXP, PCI_EXP_DEVCTL2 } from '../spec/index.js';
import { encodeTlp, joinAddress, type CplTlp, type Tlp } from '../tlp/index.js';
import {
  Requester,
  firstEnabledOffset,
  readByteCount,
  type CompletionErrorEvent,
  type RequesterConfig,
} from '../transaction/index.js';
import type { LinkStack } from './link-stack.js';

interface Entry {
  requester: Requester;
  signature: string;
}

/** The first 12 or 16 bytes of a TLP (the AER Header Log). */
function headerOf(tlp: Tlp): Uint8Array | undefined {
  try {
    const b = encodeTlp(tlp);
    // Fmt bit 0 (byte 0 bit 5) selects the 4 DW header.
    return b.subarray(0, (b[0]! & 0x20) !== 0 ? 16 : 12);
  } catch {
    return undefined;
  }
}

export class FunctionRequesters {
  private readonly entries = new Map<number, Entry>();
  private busDevice = 0;
  private readonly log: Logger;

  constructor(
    private readonly device: PciDevice,
    private readonly stack: LinkStack,
    private readonly clock: Clock,
    /** Used for what the function's registers do not say (RCB) and when it has no PCIe capability. */
    private readonly base: RequesterConfig,
    logger: Logger = silentLogger,
  ) {
    this.log = logger;
    const link = stack.link;
    const inner = link.onTlp;
    // Completions to a function's requester go there; everything else takes the usual path,
    // after the error checks a receiving function makes.
    link.onTlp = (tlp) => {
      if (tlp.kind === 'Cpl' || tlp.kind === 'CplD' || tlp.kind === 'CplLk' || tlp.kind === 'CplDLk') {
        const n = tlp.requesterId & 7;
        // Even a function that never asked anything gets its completions: they are Unexpected.
        if (this.device.function(n) !== null) {
          try {
            (this.entries.get(n)?.requester ?? this.requester(n)).handleCompletion(tlp);
          } finally {
            link.releaseCredits('Cpl', tlp.data?.length ?? 0);
          }
          return;
        }
      } else {
        this.checkRequest(tlp);
      }
      inner(tlp);
    };
    // The link's fast receive paths (a parsed view instead of a TLP object) need the same care:
    // a function's completions go to its requester; a posted write nobody decodes is a UR.
    const innerCpl = link.onCompletionData;
    if (innerCpl !== undefined) {
      link.onCompletionData = (bytes, v) => {
        const n = v.requesterId & 7;
        if (this.device.function(n) === null) return innerCpl(bytes, v);
        const e = this.entries.get(n);
        // Declining sends it down the decoding path above, which routes (and checks) it fully.
        if (e === undefined || !e.requester.handleCompletionData(bytes, v)) return false;
        link.releaseCredits('Cpl', v.dataLength);
        return true;
      };
    }
    // The scan of completions would skip that routing too: each comes to onCompletionData above.
    link.onCompletionScan = undefined;
    // Runs of writes would skip the per-write check below: a device takes them one by one
    // (BAR writes are few and small; the run path is for DMA into host memory).
    link.onMemWriteRun = undefined;
    // Read requests likewise: checkRequest above needs each decoded.
    link.onMemRead = undefined;
    link.onMemReadRun = undefined;
    const innerMemWrite = link.onMemWrite;
    if (innerMemWrite !== undefined) {
      link.onMemWrite = (bytes, v) => {
        const taken = innerMemWrite(bytes, v);
        // Checked only when taken: a declined write comes back through onTlp and is checked there.
        if (taken) {
          const address = joinAddress(v.addressHi, v.addressLo) + firstEnabledOffset(v.firstBe);
          const length = readByteCount(v.firstBe, v.lastBe, v.lengthDw);
          if (this.device.claims(address, length) === null) {
            const hdr = v.wide ? 16 : 12;
            this.unsupportedHeader(bytes.slice(v.dataOffset - hdr, v.dataOffset), false);
          }
        }
        return taken;
      };
    }
    const prevMalformed = link.onMalformedTlp;
    link.onMalformedTlp = (err, bytes) => {
      prevMalformed(err, bytes);
      this.malformed(bytes);
    };
  }

  /** The captured bus/device (Requester ID base); function n uses base | n. */
  setBusDevice(busDevice: number): void {
    this.busDevice = busDevice & 0xfff8;
    for (const [n, e] of this.entries) e.requester.setRequesterId(this.busDevice | n);
  }

  get requesterIdBase(): number {
    return this.busDevice;
  }

  /** Function `n`'s requester, built (or rebuilt when idle) from its current settings. */
  requester(n: number): Requester {
    const fn = this.device.function(n);
    const config = this.configFor(n, fn);
    const signature = JSON.stringify(config);
    const cur = this.entries.get(n);
    if (cur !== undefined) {
      if (cur.signature === signature) return cur.requester;
      const s = cur.requester.stats();
      // Outstanding requests keep their requester until they complete.
      if (s.tagsInUse > 0 || s.waitingForTags > 0) return cur.requester;
    }
    const requester = new Requester(this.stack.tl.queues, {
      clock: this.clock,
      logger: this.log.child({ fn: n }),
      counters: this.stack.counters,
      config,
      onCompletionError: (ev) => this.completionError(n, ev),
    });
    if (this.stack.link.state === 'up') requester.setLinkPartner(this.stack.link.partner);
    this.entries.set(n, { requester, signature });
    return requester;
  }

  linkUp(): void {
    for (const e of this.entries.values()) e.requester.setLinkPartner(this.stack.link.partner);
  }

  linkDown(reason: string): void {
    const error = new TlpwireError('ERR_LINK_DOWN', `link down: ${reason}`);
    for (const e of this.entries.values()) e.requester.abortAll(error);
    this.entries.clear();
  }

  /** A request function `n` issued came back UR or CA (Status register bits, §7.5.1.1.4). */
  requestFailed(n: number, e: unknown): void {
    const fn = this.device.function(n);
    if (fn === null || !(e instanceof TlpwireError)) return;
    if (e.code === 'ERR_CPL_UR') fn.errors.receivedUnsupportedRequestCompletion();
    else if (e.code === 'ERR_CPL_CA') fn.errors.receivedCompleterAbortCompletion();
  }

  private configFor(n: number, fn: PciFunction | null): RequesterConfig {
    const pcie = fn?.pcie ?? null;
    if (fn === null || pcie === null) return { ...this.base, requesterId: this.busDevice | n };
    const devctl2 = fn.config.u16(pcie.offset + PCI_EXP.DEVCTL2);
    const code = devctl2 & PCI_EXP_DEVCTL2.COMP_TIMEOUT_MASK;
    return {
      requesterId: this.busDevice | n,
      maxPayloadSize: pcie.maxPayloadSizeBytes,
      maxReadRequestSize: pcie.maxReadRequestSizeBytes,
      rcb: this.base.rcb,
      // The top of the programmed range: sockets stall for milliseconds now and then.
      cplTimeout: {
        range: CPL_TIMEOUT_RANGES_NS[code] === undefined ? 0 : code,
        point: 1,
        disabled: (devctl2 & PCI_EXP_DEVCTL2.COMP_TMOUT_DIS) !== 0,
      },
      tag10Bit: pcie.tag10BitRequesterEnabled,
      maxOutstandingTags: pcie.tagLimit,
    };
  }

  // ---- error detection ------------------------------------------------------------------------

  private completionError(n: number, ev: CompletionErrorEvent): void {
    // An unexpected completion belongs to the function it names, if that one exists.
    const target = ev.tlp !== undefined && this.device.function(ev.tlp.requesterId & 7) !== null ? ev.tlp.requesterId & 7 : n;
    const fn = this.device.function(target);
    if (fn === null) return;
    const header = ev.tlp === undefined ? undefined : headerOf(ev.tlp as CplTlp);
    let report: ErrorReport;
    switch (ev.kind) {
      case 'timeout':
        report = fn.errors.completionTimeout();
        break;
      case 'unexpected':
        report = fn.errors.unexpectedCompletion(header);
        break;
      case 'malformed':
        report = fn.errors.malformedTlp(header);
        break;
      case 'poisoned':
        report = fn.errors.poisonedTlpReceived(header, { completion: true });
        break;
    }
    this.signal(target, report, ev.kind);
  }

  /** §6.2.4: an error not tied to one function is logged in all of them; one Message is sent. */
  private malformed(bytes: Uint8Array): void {
    const header = bytes.slice(0, Math.min(16, bytes.length));
    let first: { n: number; report: ErrorReport } | undefined;
    for (const [n, fn] of this.device.functions) {
      const report = fn.errors.malformedTlp(header);
      if (first === undefined && report.message !== null) first = { n, report };
    }
    if (first !== undefined) this.signal(first.n, first.report, 'malformed TLP');
  }

  /** Requests this device will answer with UR (nobody claims them), and poisoned writes. */
  private checkRequest(tlp: Tlp): void {
    switch (tlp.kind) {
      case 'MRd':
      case 'MRd64':
      case 'MWr':
      case 'MWr64': {
        const nonPosted = tlp.kind === 'MRd' || tlp.kind === 'MRd64';
        const address = joinAddress(tlp.addressHi, tlp.addressLo) + firstEnabledOffset(tlp.firstBe);
        const length = readByteCount(tlp.firstBe, tlp.lastBe, tlp.lengthDw);
        const hit = this.device.claims(address, length);
        if (hit === null) {
          this.unsupported(tlp, nonPosted);
        } else if (tlp.ep && !nonPosted) {
          const fn = this.device.function(hit.function);
          if (fn !== null) this.signal(hit.function, fn.errors.poisonedTlpReceived(headerOf(tlp)), 'poisoned write');
        }
        return;
      }
      case 'IORd':
      case 'IOWr':
      case 'MRdLk':
      case 'MRdLk64':
      case 'CfgRd1':
      case 'CfgWr1':
      case 'FetchAdd':
      case 'FetchAdd64':
      case 'Swap':
      case 'Swap64':
      case 'CAS':
      case 'CAS64':
        this.unsupported(tlp, true);
        return;
      default:
        // Config requests to absent functions answer UR without logging: enumeration probes them.
        return;
    }
  }

  private unsupported(tlp: Tlp, nonPosted: boolean): void {
    this.unsupportedHeader(headerOf(tlp), nonPosted);
  }

  private unsupportedHeader(header: Uint8Array | undefined, nonPosted: boolean): void {
    // No function decodes it, so function 0 speaks for the device.
    const fn = this.device.function(0);
    if (fn === null) return;
    this.signal(0, fn.errors.unsupportedRequest(header, { nonPosted }), 'unsupported request');
  }

  private signal(n: number, report: ErrorReport, what: string): void {
    this.log.debug({ fn: n, severity: report.severity, advisory: report.advisory, message: report.message }, `error detected: ${what}`);
    if (report.message === null || this.stack.link.state !== 'up') return;
    this.requester(n)
      .sendMessage({ messageCode: MSG_CODE[report.message], routing: MSG_ROUTING.TO_RC })
      .catch((e: unknown) => this.log.debug({ err: errorMessage(e) }, 'error message lost'));
  }
}
