/**
 * Encoders from F32 values to ggml's on-disk tensor formats, following ggml's reference
 * quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) including their float32 rounding,
 * so the files match what llama.cpp's own tools would write for the same weights.
 */
import { GGML_TYPES, type GgmlTypeName } from "./gguf-writer.ts";

const QK = 32;

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** IEEE binary16 bits of `value`, rounded to nearest even like F16C's `vcvtps2ph` that ggml uses. */
export function f32ToF16Bits(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0] ?? 0;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half: shift the implicit-1 mantissa down to units of 2^-24.
    if (halfExponent < -10) return sign;
    return sign | roundShift(mantissa | 0x800000, 14 - halfExponent);
  }
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | ((halfExponent << 10) + roundShift(mantissa, 13));
}

function roundShift(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return rest > halfway || (rest === halfway && (kept & 1) === 1) ? kept + 1 : kept;
}

function encodeF32(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
}

function encodeF16(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i] ?? 0);
  return new Uint8Array(out.buffer);
}

/** Block: f16 scale d = max|x| / 127, then 32 int8 values round(x / d). */
function quantizeQ8_0(values: Float32Array): Uint8Array {
  const blocks = values.length / QK;
  const out = new Uint8Array(blocks * 34);
  const quants = new Int8Array(out.buffer);
  for (let block = 0; block < blocks; block++) {
    const base = block * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(values[base + j] ?? 0));
    const d = Math.fround(amax / 127);
    const inverse = d === 0 ? 0 : Math.fround(1 / d);
    const at = block * 34;
    const dBits = f32ToF16Bits(d);
    out[at] = dBits & 0xff;
    out[at + 1] = dBits >>> 8;
    for (let j = 0; j < QK; j++) {
      const scaled = Math.fround((values[base + j] ?? 0) * inverse);
      // C's roundf: halves away from zero (Math.round sends -2.5 to -2).
      quants[at + 2 + j] = scaled < 0 ? -Math.round(-scaled) : Math.round(scaled);
    }
  }
  return out;
}

/** Block: f16 scale d = (signed max) / -8, then 16 bytes: element j low nibble, j+16 high nibble. */
function quantizeQ4_0(values: Float32Array): Uint8Array {
  const blocks = values.length / QK;
  const out = new Uint8Array(blocks * 18);
  for (let block = 0; block < blocks; block++) {
    const base = block * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const value = values[base + j] ?? 0;
      if (amax < Math.abs(value)) {
        amax = Math.abs(value);
        max = value;
      }
    }
    const d = Math.fround(max / -8);
    const inverse = d === 0 ? 0 : Math.fround(1 / d);
    const at = block * 18;
    const dBits = f32ToF16Bits(d);
    out[at] = dBits & 0xff;
    out[at + 1] = dBits >>> 8;
    for (let j = 0; j < QK / 2; j++) {
      // (int8_t)(x + 8.5f) truncates; x >= -8 here, so truncation is floor.
      const low = Math.min(15, Math.trunc(Math.fround(Math.fround((values[base + j] ?? 0) * inverse) + 8.5)));
      const high = Math.min(15, Math.trunc(Math.fround(Math.fround((values[base + QK / 2 + j] ?? 0) * inverse) + 8.5)));
      out[at + 2 + j] = low | (high << 4);
    }
  }
  return out;
}

const ENCODERS: Record<GgmlTypeName, (values: Float32Array) => Uint8Array> = {
  F32: encodeF32,
  F16: encodeF16,
  Q8_0: quantizeQ8_0,
  Q4_0: quantizeQ4_0,
};

/** Encodes whole rows (for block types, `values.length` must be a multiple of 32). */
export function encodeTensorData(type: GgmlTypeName, values: Float32Array): Uint8Array {
  const { blockSize } = GGML_TYPES[type];
  if (values.length % blockSize !== 0) throw new Error(`${type} needs a multiple of ${blockSize} values, got ${values.length}`);
  return ENCODERS[type](values);
}
