package upstream

import (
	"bytes"
	"net/url"
	"strconv"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// protocol knows one upstream API: its paths, its request bodies and how
// to read its answers.
type protocol struct {
	name        string // config.Proto*
	inferPath   string
	probePath   string
	metaPath    string // "" when the protocol has no metadata
	contentType string
	binary      bool // KServe V2 binary tensor data
}

func newProtocol(cfg *config.UpstreamModel, model string) protocol {
	m := url.PathEscape(model)
	v := ""
	if cfg.Version != "" {
		v = "/versions/" + url.PathEscape(cfg.Version)
	}
	switch cfg.Protocol {
	case config.ProtoKServeV2, config.ProtoKServeV2Binary:
		base := "/v2/models/" + m + v
		p := protocol{name: cfg.Protocol, inferPath: base + "/infer", probePath: base + "/ready", metaPath: base, contentType: "application/json"}
		if cfg.Protocol == config.ProtoKServeV2Binary {
			p.binary, p.contentType = true, "application/octet-stream"
		}
		return p
	case config.ProtoTFServing:
		base := "/v1/models/" + m + v
		return protocol{name: cfg.Protocol, inferPath: base + ":predict", probePath: base, metaPath: base + "/metadata", contentType: "application/json"}
	}
	path := cfg.Path
	if path == "" {
		path = "/predict"
	}
	return protocol{name: cfg.Protocol, inferPath: path, probePath: path, contentType: "application/json"}
}

// encode appends the request body for inputs; header is the binary
// extension's JSON header length (0: none).
func (p *protocol) encode(dst []byte, inputs []*tensor.Tensor, outputs []string) (body []byte, header int) {
	switch p.name {
	case config.ProtoKServeV2, config.ProtoKServeV2Binary:
		return codec.AppendV2Request(dst, inputs, outputs, p.binary)
	case config.ProtoTFServing:
		return codec.AppendTFSRequest(dst, inputs), 0
	}
	return codec.AppendPredictRequest(dst, inputs[0]), 0
}

// decode reads a 2xx answer's outputs.
func (p *protocol) decode(d *codec.ClientDecoder, body []byte, header int, want []backends.TensorSpec, rows int) ([]*tensor.Tensor, error) {
	switch p.name {
	case config.ProtoKServeV2, config.ProtoKServeV2Binary:
		return d.DecodeV2Response(body, header, want, rows)
	case config.ProtoTFServing:
		return d.DecodeTFSResponse(body, want, rows)
	}
	return d.DecodePredictResponse(body, want, rows)
}

// probeOK says whether a probe's answer shows a replica able to serve:
// KServe V2 ready is 200; TF Serving's status 200 with a version
// AVAILABLE; the predict API has no health endpoint, so any answer below
// 500 (Flask answers GET /predict with 405) shows the server is up.
func (p *protocol) probeOK(status int, body []byte) bool {
	switch p.name {
	case config.ProtoKServeV2, config.ProtoKServeV2Binary:
		return status == 200
	case config.ProtoTFServing:
		return status == 200 && bytes.Contains(body, []byte(`"AVAILABLE"`))
	}
	return status < 500
}

// metadata reads the tensors of a metadata answer.
func (p *protocol) metadata(d *codec.ClientDecoder, body []byte) (in, out []backends.TensorSpec, err error) {
	if p.name == config.ProtoTFServing {
		return d.DecodeTFSMetadata(body)
	}
	return d.DecodeV2Metadata(body)
}

// specsOf converts configured tensors (dims after the batch dimension)
// to specs with a variable batch dimension.
func specsOf(list []config.TensorConfig, key string) ([]backends.TensorSpec, error) {
	specs := make([]backends.TensorSpec, len(list))
	for i, tc := range list {
		dt, ok := tensor.ParseDataType(tc.DataType)
		if !ok {
			return nil, &configError{key: key + "[" + strconv.Itoa(i) + "].datatype", msg: strconv.Quote(tc.DataType) + " is not a KServe V2 datatype; want e.g. FP32, INT64, BYTES"}
		}
		specs[i] = backends.TensorSpec{Name: tc.Name, DType: dt, Shape: append([]int64{-1}, tc.Dims...)}
	}
	return specs, nil
}

type configError struct{ key, msg string }

func (e *configError) Error() string { return "config: " + e.key + ": " + e.msg }
