import type { DeviceBarrier } from './barriers.js';

/**
 * Device-side ring code is written once, as generators that yield what they need from device
 * memory (a DMA read, several reads issued together, a barrier, several sub-tasks at once) and
 * get the answer back from `yield`. Two runners drive them:
 *
 * - `runDmaTaskAsync`: with promises, over any DeviceMemory (the real runtime, unit tests);
 * - `runDmaTask`: with callbacks when the memory offers them (`readCb`/`barrierCb`), so that
 *   in the simulator a continuation runs inside the VirtualClock's event loop, at the virtual
 *   instant its read completed, with no promise and no microtask turn in between. That is what
 *   lets a stress run execute millions of ring operations in one synchronous loop.
 *
 * Both runners perform the same steps in the same order, so the ring logic cannot differ
 * between the two runtimes.
 */

export interface ReadStep {
  readonly op: 'read';
  readonly addr: number;
  readonly len: number;
}

/** Reads issued together, in order; they may complete in any order. Answer: Uint8Array[]. */
export interface ReadManyStep {
  readonly op: 'reads';
  readonly addrs: readonly number[];
  readonly lens: readonly number[];
}

export interface BarrierStep {
  readonly op: 'barrier';
  readonly kind: DeviceBarrier;
}

/** Sub-tasks started together (each runs until its first step before the next starts). Answer: their results. */
export interface AllStep {
  readonly op: 'all';
  readonly tasks: readonly DmaTask<unknown>[];
}

export type DmaStep = ReadStep | ReadManyStep | BarrierStep | AllStep;

/** A piece of device-side ring work; `yield` answers: Uint8Array, Uint8Array[], undefined, unknown[]. */
export type DmaTask<T> = Generator<DmaStep, T, unknown>;

/** Completion of a callback read: data, or (data undefined) the error. */
export type DmaReadDone = (data: Uint8Array | undefined, err: unknown) => void;

/**
 * The device's view of host memory: DMA reads (non-posted, answered by completions) and DMA
 * writes (posted), with the device engine's barriers. Reads reject with a TlpwireError when the
 * host answers UR/CA (an address outside the IOMMU's mappings, say).
 */
export interface DeviceMemory {
  read(addr: number, len: number): Promise<Uint8Array>;
  write(addr: number, data: Uint8Array): void;
  barrier(kind: DeviceBarrier): void | Promise<void>;
  /**
   * Optional callback form of `read` (the simulator's fast path). `done` must be called later,
   * from the clock's event loop, never from inside this call.
   */
  readCb?(addr: number, len: number, done: DmaReadDone): void;
  /**
   * Optional callback form of `barrier`: true when the barrier is complete at once; otherwise
   * `done` is called later (from the event loop).
   */
  barrierCb?(kind: DeviceBarrier, done: () => void): boolean;
}

export function readStep(addr: number, len: number): ReadStep {
  return { op: 'read', addr, len };
}

export function barrierStep(kind: DeviceBarrier): BarrierStep {
  return { op: 'barrier', kind };
}

// ---- promise runner -------------------------------------------------------------------------------

/** Runs a task with promises; resolves with its result or rejects with what it threw. */
export async function runDmaTaskAsync<T>(task: DmaTask<T>, mem: DeviceMemory): Promise<T> {
  let value: unknown = undefined;
  let err: unknown = undefined;
  let failed = false;
  for (;;) {
    const r = failed ? task.throw(err) : task.next(value);
    if (r.done === true) return r.value;
    failed = false;
    try {
      value = await performAsync(r.value, mem);
    } catch (e) {
      err = e;
      failed = true;
    }
  }
}

function performAsync(step: DmaStep, mem: DeviceMemory): unknown {
  switch (step.op) {
    case 'read':
      return mem.read(step.addr, step.len);
    case 'reads':
      return Promise.all(step.addrs.map((a, i) => mem.read(a, step.lens[i]!)));
    case 'barrier':
      return mem.barrier(step.kind);
    case 'all':
      return Promise.all(step.tasks.map((t) => runDmaTaskAsync(t, mem)));
  }
}

// ---- callback runner ------------------------------------------------------------------------------

/** Whether `runDmaTask` can drive tasks over this memory with callbacks. */
export function hasCallbackMemory(mem: DeviceMemory): boolean {
  return mem.readCb !== undefined && mem.barrierCb !== undefined;
}

/**
 * Runs a task: with callbacks when the memory has them (see the file comment), else with
 * promises. Exactly one of `onDone` / `onError` is called, once; with callbacks, never from
 * inside this call unless the task finishes without a step.
 */
export function runDmaTask<T>(task: DmaTask<T>, mem: DeviceMemory, onDone: (value: T) => void, onError: (err: unknown) => void): void {
  if (hasCallbackMemory(mem)) {
    new TaskRunner(task, mem, onDone, onError).resume(undefined, false);
    return;
  }
  runDmaTaskAsync(task, mem).then(onDone, onError);
}

/**
 * Drives one generator. `resume` is re-entrant safe: a step that completes while the runner is
 * inside its loop (a barrier already satisfied) is taken by the loop instead of recursing.
 */
class TaskRunner<T> {
  private running = false;
  private ready = false;
  private value: unknown = undefined;
  private failed = false;
  private finished = false;
  /** A runner has one read in flight at a time: one callback object, no allocation per read. */
  private readonly onRead: DmaReadDone = (data, err) => {
    if (data === undefined) this.resume(err, true);
    else this.resume(data, false);
  };
  private readonly onBarrier = (): void => this.resume(undefined, false);

  constructor(
    private readonly task: DmaTask<T>,
    private readonly mem: DeviceMemory,
    private readonly onDone: (value: T) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  resume(value: unknown, failed: boolean): void {
    if (this.finished) return;
    this.value = value;
    this.failed = failed;
    this.ready = true;
    if (this.running) return;
    this.running = true;
    while (this.ready) {
      this.ready = false;
      let r: IteratorResult<DmaStep, T>;
      try {
        r = this.failed ? this.task.throw(this.value) : this.task.next(this.value);
      } catch (e) {
        this.finish();
        this.onError(e);
        return;
      }
      if (r.done === true) {
        this.finish();
        this.onDone(r.value);
        return;
      }
      this.perform(r.value);
    }
    this.running = false;
  }

  private finish(): void {
    this.finished = true;
    this.running = false;
  }

  private perform(step: DmaStep): void {
    const mem = this.mem;
    switch (step.op) {
      case 'read':
        mem.readCb!(step.addr, step.len, this.onRead);
        return;
      case 'barrier':
        if (mem.barrierCb!(step.kind, this.onBarrier)) {
          this.value = undefined;
          this.failed = false;
          this.ready = true;
        }
        return;
      case 'reads':
        this.gather(step.addrs.length, (i, done) => mem.readCb!(step.addrs[i]!, step.lens[i]!, (d, e) => (d === undefined ? done.fail(e) : done.ok(i, d))));
        return;
      case 'all':
        this.gather(step.tasks.length, (i, done) => {
          new TaskRunner(
            step.tasks[i]!,
            mem,
            (v) => done.ok(i, v),
            (e) => done.fail(e),
          ).resume(undefined, false);
        });
        return;
    }
  }

  /** Starts n parts; resumes with their results in order once all are done, or with the first error. */
  private gather(n: number, start: (i: number, done: Gather) => void): void {
    if (n === 0) {
      this.value = [];
      this.failed = false;
      this.ready = true;
      return;
    }
    const g = new Gather(n, this);
    for (let i = 0; i < n; i++) start(i, g);
  }
}

class Gather {
  private readonly results: unknown[];
  private left: number;
  private over = false;

  constructor(
    n: number,
    private readonly runner: { resume(value: unknown, failed: boolean): void },
  ) {
    this.results = new Array<unknown>(n);
    this.left = n;
  }

  ok(i: number, v: unknown): void {
    if (this.over) return;
    this.results[i] = v;
    if (--this.left === 0) {
      this.over = true;
      this.runner.resume(this.results, false);
    }
  }

  fail(e: unknown): void {
    if (this.over) return;
    this.over = true;
    this.runner.resume(e, true);
  }
}
