/**
 * A random source is passed in like the Clock. `SeededRng` is deterministic (sfc32 seeded
 * through splitmix32), so the same seed gives the same sequence on every machine.
 */
export interface Rng {
  /** A uniform unsigned 32-bit integer. */
  u32(): number;
  /** A uniform integer in [0, n), n ≥ 1. */
  int(n: number): number;
  /** A uniform float in [0, 1). */
  float(): number;
  /** True with probability p. */
  chance(p: number): boolean;
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class SeededRng implements Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    const mix = splitmix32(this.seed);
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  /** A new independent generator derived from this one (for sub-components). */
  fork(): SeededRng {
    return new SeededRng(this.u32());
  }
}
