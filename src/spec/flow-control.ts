/**
 * §3.4.2 Flow Control, Scaled Flow Control (a Data Link Feature since PCIe 4.0, kept in 6.x).
 * Constants only.
 *
 * Without scaling the credit fields of InitFC/UpdateFC are 8 bits (headers) and 12 bits (data),
 * and the counters wrap at those widths. With Scaled Flow Control active, a receiver picks a
 * scale factor per credit type (HdrScale/DataScale 01b = 1, 10b = 4, 11b = 16); the DLLP fields
 * stay 8/12 bits and carry the credit value divided by the scale, while the counters widen by
 * log2(scale) bits. The gate stays the same formula over the wider counters.
 */

/** Scale factors and how many bits each adds to the 8-bit header / 12-bit data counters. */
export const FC_SCALE = {
  /** HdrScale/DataScale encoding 01b. */
  X1: { factor: 1, shift: 0, encoding: 0b01 },
  /** 10b. */
  X4: { factor: 4, shift: 2, encoding: 0b10 },
  /** 11b. */
  X16: { factor: 16, shift: 4, encoding: 0b11 },
} as const;

export const FC_SCALE_FACTORS = [1, 4, 16] as const;

/** Width of the HdrFC and DataFC fields in InitFC/UpdateFC DLLPs (unchanged by scaling). */
export const FC_FIELD_BITS = { HDR: 8, DATA: 12 } as const;

/**
 * Largest credit value a receiver may advertise at each scale (§3.4.2, Table "Scaled Flow Control
 * scaling factors"): header 127 / 508 / 2032, data 2047 / 8188 / 32752. Half the counter range
 * minus one scale step, so that the gate's "≤ 2^n / 2" test stays unambiguous.
 */
export const FC_MAX_CREDITS = {
  HDR: { 1: 127, 4: 508, 16: 2032 },
  DATA: { 1: 2047, 4: 8188, 16: 32752 },
} as const;
