package codec

import (
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testLimits() config.Limits {
	return config.Limits{MaxBodyBytes: 1 << 16, MaxTensorElements: 1000, MaxJSONDepth: 8}
}

// header is a Header of at most one Inference-Header-Content-Length.
type header struct{ hdrLen []byte }

func (h header) Peek(key string) []byte {
	if key == "Inference-Header-Content-Length" {
		return h.hdrLen
	}
	return nil
}

// respHeader records what an encoder sets.
type respHeader map[string]string

func (h respHeader) Set(k, v string)          { h[k] = v }
func (h respHeader) SetContentType(ct string) { h["Content-Type"] = ct }

// decode runs c.Decode on a fresh Request (not pooled: the tests keep it).
func decode(c Codec, body, hdrLen []byte, m *backends.ModelVersion, lim *config.Limits) (*Request, error) {
	r := &Request{Model: m, Limits: lim, byName: map[string]*tensor.Tensor{}}
	err := c.Decode(r, body, header{hdrLen})
	return r, err
}

func decodeV2(body, hdrLen []byte, m *backends.ModelVersion, lim *config.Limits) (*Request, error) {
	return decode(V2, body, hdrLen, m, lim)
}

func decodeTFS(body []byte, m *backends.ModelVersion, lim *config.Limits) (*Request, error) {
	return decode(TFS, body, nil, m, lim)
}

func decodePredict(body []byte, m *backends.ModelVersion, lim *config.Limits) ([]*tensor.Tensor, error) {
	r, err := decode(Predict, body, nil, m, lim)
	return r.Inputs, err
}

// decodePredictJSONOnly is /predict's general path alone (no fast path).
func decodePredictJSONOnly(body []byte, m *backends.ModelVersion, lim *config.Limits) ([]*tensor.Tensor, error) {
	r := &Request{Model: m, Limits: lim, byName: map[string]*tensor.Tensor{}}
	err := decodePredictJSON(r, body)
	return r.Inputs, err
}

func encodePredict(dst []byte, m *backends.ModelVersion, out []*tensor.Tensor) ([]byte, error) {
	return Predict.Encode(dst, &Request{Model: m}, out, respHeader{})
}

// strBlob is BYTES data in the V2 layout.
func strBlob(v ...string) string {
	var b []byte
	for _, s := range v {
		b = tensor.AppendString(b, []byte(s))
	}
	return string(b)
}
