// Package batcher coalesces concurrent inference requests for one model
// version into batches, adaptively: no added latency at low load, large
// batches under load, deadline-aware, and it sheds load instead of
// queueing without bound.
//
// # Queues
//
// Each model version has one queue per priority level (1 = highest,
// strict between levels, FIFO within a level). Batch size counts rows: a
// request carrying 5 rows counts 5. A batch takes requests from the
// highest level down, in order, while they fit in MaxBatchSize and share
// the first request's non-batch dimensions; it stops at the first request
// that does not fit, so requests are never reordered within a level. The
// queue is bounded in rows (QueueCapacity): a request that does not fit is
// refused at once with ErrQueueFull (HTTP 503 with Retry-After), so memory
// stays bounded under any offered load.
//
// # Dispatch
//
// At most as many batches run at once as the backend declares
// (Metadata().Concurrency; the CPU engine: one per core). When a worker is
// free, the scheduler dispatches what is queued at once unless waiting
// pays: it learns the backend's cost online, t(n) ≈ a + b·n fitted by
// least squares over the last 64 batches, and the arrival rate λ of rows.
// A worker with its share λw = λ/workers keeps up when it collects the
// next batch in the time it runs this one, at n* = λw·a / (1 − λw·b) rows.
// Below n* the scheduler waits for the expected arrivals, but never longer
// than MaxQueueDelay after the oldest queued request arrived and never
// past the time the batch must start to meet the tightest deadline in it.
// At low load n* < 1, and with nothing learnt, or no fixed cost a, nothing
// waits: a lone request pays no batching delay. Under load, requests queue
// while the workers are busy, and a worker that frees takes a full batch.
//
// Hand-offs are avoided where the policy allows: a request that arrives to
// a free worker and an empty queue, with nothing worth waiting for, runs
// alone on its own goroutine; a request whose arrival releases a batch
// while a worker is free (it filled the batch, or waiting stopped paying)
// runs that batch on its own goroutine too, and the scheduler is woken
// only when its timer would fire later than what the arrival changed. The
// scheduler goroutine hands batches to worker goroutines only when a timer
// releases them or a worker frees with work queued.
//
// Config.PreferredBatchSize sets a floor under n*: batches then wait for
// that many rows at any load (still within MaxQueueDelay and the
// deadlines), for backends whose batching pays in ways the cost model
// cannot observe, at the price of a lone request waiting MaxQueueDelay.
//
// Every batch is released for one reason, counted by
// coalesce_batches_total{reason}: "full" (MaxBatchSize rows), "idle" (a
// free worker and waiting would not pay, or the rows reach n*), "delay" (MaxQueueDelay reached),
// "deadline" (waiting longer would miss a deadline), "close" (shutdown
// flushes the queue).
//
// # Deadlines and admission
//
// Every request has a deadline. A request whose deadline passes while it
// is queued is answered at once with ErrExpired (HTTP 504) and never
// executed. On arrival, a request whose estimated wait (the batches queued
// ahead of it at its priority or higher, spread over the workers, plus its
// own) already exceeds its deadline is refused with ErrOverloaded (HTTP 503
// with Retry-After) rather than timing out late. A batch runs until its
// last member's deadline.
//
// Every request is answered by its own deadline, whatever the backend
// does: Submit waits for its answer or its deadline, whichever comes
// first, and answers ErrExpired at the deadline even when its batch's
// backend call hangs (the batch goes on for its other members; the late
// answer is dropped). For that, the batcher never reads a request's
// tensors after its submitter has left: the members of a batch of several
// requests are copied when merged, and a backend that declares itself
// backends.Remote (it waits on the network) gets a copy even of a lone
// request, and its batches never run on a submitter's goroutine. Only an
// in-process backend running one request alone on that request's own
// tensors makes its submitter wait for the call, which the deadline in
// the backend's context bounds. A backend implementing backends.Gate can
// refuse a request before it is queued (an upstream whose breakers are all
// open answers 503 at once).
//
// # Errors per request
//
// A batch that the backend refuses with backends.ErrInvalidInput (an
// upstream's 400 for one bad row) is split in halves that run again, down
// to single requests: the bad request gets the backend's error, its
// neighbours their outputs, for about 2·log2(n) extra calls per bad
// request.
//
// # Merge and split
//
// The inputs of a batch's requests are concatenated along dimension 0 and
// every output is split back by each request's row count, in order, so
// each request gets exactly its rows. A failed batch fails exactly its own
// requests, each with the error (but see Errors per request); a panicking
// backend is an error.
//
// # Batching off
//
// With Config.Enabled false every batch holds one request: the same queue,
// deadlines and shedding, no coalescing. It is the baseline every
// benchmark compares batching against.
package batcher
