// Package cache answers repeated inference requests from memory and
// computes identical concurrent requests once.
//
// A Cache serves one model version (one load generation). Its entries are
// keyed by the exact bytes of a Key (model, version, generation and every
// input's name, datatype, shape and data) and found by a 64-bit hash of
// them; a hit is accepted only when the stored key bytes equal the
// request's, so a hash collision is a miss, never another request's
// prediction. Entries hold every output of the model call, copied out of
// the batch buffers, and are bounded by bytes (keys, values and an
// estimate of the bookkeeping), with an optional time to live; only
// successful results are stored.
//
// With de-duplication on, a request identical to one being computed
// waits for that computation instead of running again: many concurrent
// cache misses on one key result in one model call. Each waiter keeps its
// own deadline; a leader's failure is shared, except one that belongs to
// the leader alone (its deadline, as Config.Private says), after which
// the waiter computes afresh.
//
// Entries live in a golang-lru/v2 simplelru.LRU per shard, each behind
// one mutex; the shard is picked by the key's hash. Eviction is least
// recently used within a shard.
package cache
