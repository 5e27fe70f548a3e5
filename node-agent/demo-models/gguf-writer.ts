/**
 * A GGUF v3 writer. The header (metadata + tensor infos) is built in memory; tensor data is pulled
 * from each tensor's generator and written in bounded chunks, so a model of hundreds of megabytes
 * never has to exist in memory at once.
 */
import { open } from "node:fs/promises";

export type GgufNumberType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
export type GgufArrayElementType = "string" | "f32" | "i32" | "u32";

export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: "u64" | "i64"; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; elementType: "string"; values: readonly string[] }
  | { type: "array"; elementType: Exclude<GgufArrayElementType, "string">; values: readonly number[] };

/** Metadata in file order: a plain object keeps insertion order, which keeps the bytes stable. */
export type GgufMetadata = Record<string, GgufValue>;

export const gguf = {
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value }),
  u64: (value: number | bigint): GgufValue => ({ type: "u64", value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  string: (value: string): GgufValue => ({ type: "string", value }),
  strings: (values: readonly string[]): GgufValue => ({ type: "array", elementType: "string", values }),
  f32s: (values: readonly number[]): GgufValue => ({ type: "array", elementType: "f32", values }),
  i32s: (values: readonly number[]): GgufValue => ({ type: "array", elementType: "i32", values }),
};

const VALUE_TYPE_IDS = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;

/** ggml tensor types this writer can size: id, values per block, bytes per block. */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, blockBytes: 4 },
  F16: { id: 1, blockSize: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockSize: 32, blockBytes: 18 },
  Q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;

export interface GgufTensor {
  name: string;
  /** ne0 first: the row length, then the number of rows. */
  dims: readonly number[];
  type: GgmlTypeName;
  /** Yields the tensor's encoded bytes in order; called once, while the file is written. */
  data: () => Iterable<Uint8Array>;
}

export interface GgufFile {
  metadata: GgufMetadata;
  tensors: readonly GgufTensor[];
}

/** GGUF's default (no `general.alignment` key needed); also what ggml's block types expect. */
const ALIGNMENT = 32;

export function tensorByteSize(tensor: Pick<GgufTensor, "name" | "dims" | "type">): number {
  const { blockSize, blockBytes } = GGML_TYPES[tensor.type];
  const rowLength = tensor.dims[0] ?? 1;
  if (rowLength % blockSize !== 0) {
    throw new Error(`${tensor.name}: row length ${rowLength} is not a multiple of the ${tensor.type} block size ${blockSize}`);
  }
  const elements = tensor.dims.reduce((product, dim) => product * dim, 1);
  return (elements / blockSize) * blockBytes;
}

const alignUp = (offset: number, alignment: number) => Math.ceil(offset / alignment) * alignment;

/** Grows as needed; little-endian like every GGUF file. */
class ByteSink {
  private buffer = Buffer.alloc(64 * 1024);
  length = 0;

  /**
   * Room for `bytes` more, at the returned offset. Call it before reading `this.buffer`: growing
   * replaces the buffer (`this.buffer.write(…, this.reserve(n))` would write into the old one).
   */
  private reserve(bytes: number): number {
    if (this.length + bytes > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + bytes));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const at = this.length;
    this.length += bytes;
    return at;
  }

  u8(value: number) { const at = this.reserve(1); this.buffer.writeUInt8(value, at); }
  i8(value: number) { const at = this.reserve(1); this.buffer.writeInt8(value, at); }
  u16(value: number) { const at = this.reserve(2); this.buffer.writeUInt16LE(value, at); }
  i16(value: number) { const at = this.reserve(2); this.buffer.writeInt16LE(value, at); }
  u32(value: number) { const at = this.reserve(4); this.buffer.writeUInt32LE(value, at); }
  i32(value: number) { const at = this.reserve(4); this.buffer.writeInt32LE(value, at); }
  f32(value: number) { const at = this.reserve(4); this.buffer.writeFloatLE(value, at); }
  f64(value: number) { const at = this.reserve(8); this.buffer.writeDoubleLE(value, at); }
  u64(value: bigint) { const at = this.reserve(8); this.buffer.writeBigUInt64LE(value, at); }
  i64(value: bigint) { const at = this.reserve(8); this.buffer.writeBigInt64LE(value, at); }
  string(value: string) {
    const bytes = Buffer.from(value, "utf8");
    this.u64(BigInt(bytes.length));
    const at = this.reserve(bytes.length);
    bytes.copy(this.buffer, at);
  }
  padTo(alignment: number) { this.reserve(alignUp(this.length, alignment) - this.length); }
  bytes(): Buffer { return this.buffer.subarray(0, this.length); }
}

function writeValue(sink: ByteSink, value: GgufValue) {
  switch (value.type) {
    case "u8": return sink.u8(value.value);
    case "i8": return sink.i8(value.value);
    case "u16": return sink.u16(value.value);
    case "i16": return sink.i16(value.value);
    case "u32": return sink.u32(value.value);
    case "i32": return sink.i32(value.value);
    case "f32": return sink.f32(value.value);
    case "f64": return sink.f64(value.value);
    case "u64": return sink.u64(value.value);
    case "i64": return sink.i64(value.value);
    case "bool": return sink.u8(value.value ? 1 : 0);
    case "string": return sink.string(value.value);
    case "array": {
      sink.u32(VALUE_TYPE_IDS[value.elementType]);
      sink.u64(BigInt(value.values.length));
      if (value.elementType === "string") {
        for (const element of value.values) sink.string(element);
      } else {
        for (const element of value.values) {
          if (value.elementType === "f32") sink.f32(element);
          else if (value.elementType === "i32") sink.i32(element);
          else sink.u32(element);
        }
      }
      return;
    }
  }
}

interface Layout {
  header: Buffer;
  /** Offset of each tensor inside the data section, in tensor order. */
  offsets: number[];
  sizes: number[];
  totalSize: number;
}

function layout(file: GgufFile): Layout {
  const { metadata } = file;
  const sink = new ByteSink();
  sink.u8(0x47); sink.u8(0x47); sink.u8(0x55); sink.u8(0x46); // "GGUF"
  sink.u32(3);
  sink.u64(BigInt(file.tensors.length));
  sink.u64(BigInt(Object.keys(metadata).length));
  for (const [key, value] of Object.entries(metadata)) {
    sink.string(key);
    sink.u32(VALUE_TYPE_IDS[value.type]);
    writeValue(sink, value);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let dataOffset = 0;
  for (const tensor of file.tensors) {
    const size = tensorByteSize(tensor);
    sink.string(tensor.name);
    sink.u32(tensor.dims.length);
    for (const dim of tensor.dims) sink.u64(BigInt(dim));
    sink.u32(GGML_TYPES[tensor.type].id);
    sink.u64(BigInt(dataOffset));
    offsets.push(dataOffset);
    sizes.push(size);
    dataOffset = alignUp(dataOffset + size, ALIGNMENT);
  }
  sink.padTo(ALIGNMENT);
  const header = Buffer.from(sink.bytes());
  // The last tensor is not padded: the file ends with its data.
  const lastEnd = offsets.length === 0 ? 0 : (offsets.at(-1) ?? 0) + (sizes.at(-1) ?? 0);
  return { header, offsets, sizes, totalSize: header.length + lastEnd };
}

/** The exact size `writeGguf` will produce, without generating any tensor data. */
export function ggufFileSize(file: GgufFile): number {
  return layout(file).totalSize;
}

// Big enough that the syscall count stays low for a 600 MB file, small enough to be irrelevant in memory.
const WRITE_CHUNK_BYTES = 8 * 1024 * 1024;

/** Writes `file` to `path` (created or truncated) and returns the number of bytes written. */
export async function writeGguf(path: string, file: GgufFile): Promise<number> {
  const { header, offsets, sizes, totalSize } = layout(file);
  const handle = await open(path, "w");
  try {
    const pending = Buffer.alloc(WRITE_CHUNK_BYTES);
    let pendingLength = 0;
    let written = 0;
    const flush = async () => {
      if (pendingLength === 0) return;
      await handle.write(pending, 0, pendingLength);
      written += pendingLength;
      pendingLength = 0;
    };
    const push = async (bytes: Uint8Array) => {
      let from = 0;
      while (from < bytes.length) {
        const take = Math.min(bytes.length - from, pending.length - pendingLength);
        pending.set(bytes.subarray(from, from + take), pendingLength);
        pendingLength += take;
        from += take;
        if (pendingLength === pending.length) await flush();
      }
    };

    await push(header);
    const dataStart = header.length;
    for (const [index, tensor] of file.tensors.entries()) {
      const padding = dataStart + (offsets[index] ?? 0) - (written + pendingLength);
      await push(new Uint8Array(padding));
      let tensorBytes = 0;
      for (const chunk of tensor.data()) {
        tensorBytes += chunk.length;
        await push(chunk);
      }
      if (tensorBytes !== sizes[index]) {
        throw new Error(`${tensor.name}: generated ${tensorBytes} bytes, its shape and type need ${sizes[index]}`);
      }
    }
    await flush();
    if (written !== totalSize) throw new Error(`wrote ${written} bytes, expected ${totalSize}`);
    return written;
  } finally {
    await handle.close();
  }
}
