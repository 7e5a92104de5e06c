/// A layer of a `KVCache` copied to the GPU (``KVCache/cudaLayer(_:heads:)``): the copy and, per KV
/// head, the row count and edit count of the head's rows when it was last brought up to date, so
/// that rows appended since are copied in and any other change copies the layer again.
struct KVCudaMirror {
    let gpu: CudaKVLayer
    var counts: [Int]
    let edits: [Int]
}
