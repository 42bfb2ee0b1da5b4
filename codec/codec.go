// Package codec turns request bodies of the protocols Coalesce speaks into
// input tensors for a model, and a model's output tensors into response
// bodies: the seed's POST /predict, KServe V2 (JSON and binary tensors) and
// TensorFlow Serving REST. It does not import fasthttp, so that it can be
// fuzzed on its own and reused by clients of those protocols.
//
// Decoders never panic and fail only with *Error; on success the tensors
// they return are owned by the Request (nothing points into the body), fit
// the model's input specs exactly (names, order, datatypes, shapes) and hold
// finite numbers unless limits.allow_non_finite or the input takes missing
// values. JSON numbers are correctly rounded to FP32 and FP64.
package codec

import (
	"sync"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Protocol names, used as the protocol label of metrics.
const (
	ProtoPredict = "predict"
	ProtoV2      = "v2"
	ProtoTFS     = "tfs"
)

// Header gives a decoder the request headers its protocol defines.
// *fasthttp.RequestHeader implements it; the returned slice is valid until
// the decoder returns.
type Header interface {
	Peek(key string) []byte
}

// ResponseHeader takes the headers an encoder sets.
// *fasthttp.ResponseHeader implements it.
type ResponseHeader interface {
	Set(key, value string)
	SetContentType(contentType string)
}

// Codec decodes requests of one protocol and encodes their answers.
// Implementations are stateless and safe for concurrent use.
type Codec interface {
	// Protocol returns the protocol's name (ProtoPredict, ...).
	Protocol() string
	// Decode decodes body, a request for r.Model, into r: its Inputs in
	// the model's input order with the declared datatypes, the scheduling
	// hints the body carries, and the output selection. body is only
	// read, and not retained.
	Decode(r *Request, body []byte, h Header) error
	// Encode appends the answer to r, whose model returned out (in the
	// model's output order), to dst, and sets the content type and any
	// protocol headers on h.
	Encode(dst []byte, r *Request, out []*tensor.Tensor, h ResponseHeader) ([]byte, error)
}

// The codecs of the protocols.
var (
	Predict Codec = predictCodec{}
	V2      Codec = v2Codec{}
	TFS     Codec = tfsCodec{}
)

// Request is one decoded inference request. Get one with AcquireRequest
// and return it with ReleaseRequest once its answer is encoded; it is not
// safe for concurrent use.
type Request struct {
	// Model is the model version the request is decoded for.
	Model *backends.ModelVersion
	// Limits bound what decoding may allocate and accept.
	Limits *config.Limits
	// Inputs are the decoded tensors, in Model's input order.
	Inputs []*tensor.Tensor
	// Timeout and Priority are the scheduling hints of the body (KServe
	// V2's parameters.timeout and parameters.priority); 0 when absent.
	Timeout  time.Duration
	Priority int
	// Outputs selects the outputs to answer with, in request order; empty
	// means the protocol's default.
	Outputs []Output

	// KServe V2 state: the request id, whether every output is binary
	// (parameters.binary_data_output) and whether the request was a raw
	// binary body (Inference-Header-Content-Length: 0).
	id          string
	hasID       bool
	binaryAll   bool
	raw         bool
	columnar    bool // TF Serving: "inputs" (columnar) rather than "instances"
	byName      map[string]*tensor.Tensor
	inputsArray [4]*tensor.Tensor // backs Inputs for models of few inputs
}

// ID returns the request's id (KServe V2's id field), "" when it has none.
func (r *Request) ID() string { return r.id }

// Output is one requested output.
type Output struct {
	Index  int  // in the model's outputs
	Binary bool // KServe V2: send as binary data after the JSON header
}

var requestPool = sync.Pool{New: func() any { return &Request{byName: map[string]*tensor.Tensor{}} }}

// AcquireRequest returns an empty Request for model m under limits lim.
func AcquireRequest(m *backends.ModelVersion, lim *config.Limits) *Request {
	r := requestPool.Get().(*Request)
	r.Model, r.Limits = m, lim
	return r
}

// ReleaseRequest returns r to the pool. Neither r nor its Inputs may be
// used afterwards.
func ReleaseRequest(r *Request) {
	clear(r.inputsArray[:])
	clear(r.byName)
	*r = Request{byName: r.byName, Outputs: r.Outputs[:0]}
	requestPool.Put(r)
}

// setInputs checks named tensors against the model and stores them in
// r.Inputs; field names where they came from, for error messages.
func (r *Request) setInputs(byName map[string]*tensor.Tensor, field string) error {
	in, err := prepareInputs(r.Model, byName, field, r.inputsArray[:0])
	r.Inputs = in
	return err
}
