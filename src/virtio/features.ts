/** Feature bits as a bigint (64 bits: not a hot path, and exact). */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

export function hasFeature(features: bigint, bit: number): boolean {
  return (features & featureBit(bit)) !== 0n;
}

export function featuresFromBits(bits: readonly number[]): bigint {
  let f = 0n;
  for (const b of bits) f |= featureBit(b);
  return f;
}

export function featureBits(features: bigint): number[] {
  const out: number[] = [];
  for (let b = 0; b < 64; b++) if (hasFeature(features, b)) out.push(b);
  return out;
}
