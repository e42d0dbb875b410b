/**
 * What sits behind a BAR: a handler for memory (or I/O) reads and writes at offsets into the BAR.
 * Offsets and lengths given to a region are always inside the BAR (the function checks).
 */

export interface BarRegion {
  /** Returns exactly `length` bytes read at `offset`. */
  read(offset: number, length: number): Uint8Array;
  write(offset: number, data: Uint8Array): void;
  /** Back to power-on state (called on Function Level Reset). */
  reset?(): void;
}

/**
 * Plain memory behind a BAR (RAM-like: what is written reads back). Pages are allocated on first
 * write, so a BAR of gigabytes costs nothing until used.
 */
export class MemoryRegion implements BarRegion {
  private static readonly PAGE = 4096;
  private readonly pages = new Map<number, Uint8Array>();

  constructor(readonly size: number) {}

  read(offset: number, length: number): Uint8Array {
    const page = Math.floor(offset / MemoryRegion.PAGE);
    const at = offset - page * MemoryRegion.PAGE;
    if (at + length <= MemoryRegion.PAGE && offset + length <= this.size) {
      // Fast path: the access stays inside one page (every DW/QW register access does).
      const p = this.pages.get(page);
      return p === undefined ? new Uint8Array(length) : p.slice(at, at + length);
    }
    const out = new Uint8Array(length);
    this.walk(offset, length, (page, at, len, pos) => {
      const p = this.pages.get(page);
      if (p !== undefined) out.set(p.subarray(at, at + len), pos);
    });
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    this.walk(offset, data.length, (page, at, len, pos) => {
      let p = this.pages.get(page);
      if (p === undefined) {
        p = new Uint8Array(MemoryRegion.PAGE);
        this.pages.set(page, p);
      }
      p.set(data.subarray(pos, pos + len), at);
    });
  }

  reset(): void {
    this.pages.clear();
  }

  private walk(offset: number, length: number, fn: (page: number, at: number, len: number, pos: number) => void): void {
    const end = Math.min(offset + length, this.size);
    let pos = 0;
    for (let a = offset; a < end; ) {
      const page = Math.floor(a / MemoryRegion.PAGE);
      const at = a - page * MemoryRegion.PAGE;
      const len = Math.min(MemoryRegion.PAGE - at, end - a);
      fn(page, at, len, pos);
      a += len;
      pos += len;
    }
  }
}

interface Window {
  start: number;
  end: number;
  region: BarRegion;
}

/**
 * A BAR made of windows over a background region: accesses inside a window go to it (at offsets
 * relative to the window), the rest to the background; with no background, unmapped bytes read
 * as 0 and writes to them are dropped. An access spanning several windows is split.
 */
export class OverlayRegion implements BarRegion {
  private readonly windows: Window[] = [];

  constructor(private readonly background: BarRegion | null = null) {}

  map(offset: number, length: number, region: BarRegion): this {
    const w = { start: offset, end: offset + length, region };
    this.windows.push(w);
    this.windows.sort((a, b) => a.start - b.start);
    return this;
  }

  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.split(offset, length, (at, len, w) => {
      if (w !== null) out.set(w.region.read(at - w.start, len), at - offset);
      else if (this.background !== null) out.set(this.background.read(at, len), at - offset);
    });
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    this.split(offset, data.length, (at, len, w) => {
      const part = data.subarray(at - offset, at - offset + len);
      if (w !== null) w.region.write(at - w.start, part);
      else this.background?.write(at, part);
    });
  }

  reset(): void {
    this.background?.reset?.();
    for (const w of this.windows) w.region.reset?.();
  }

  private split(offset: number, length: number, fn: (at: number, len: number, w: Window | null) => void): void {
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const inside = this.windows.find((w) => at >= w.start && at < w.end);
      if (inside !== undefined) {
        const len = Math.min(end, inside.end) - at;
        fn(at, len, inside);
        at += len;
        continue;
      }
      const next = this.windows.find((w) => w.start > at);
      const stop = Math.min(end, next?.start ?? end);
      fn(at, stop - at, null);
      at = stop;
    }
  }
}
