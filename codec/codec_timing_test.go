package codec

import (
	"encoding/binary"
	"math"
	"strconv"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The codec benchmarks decode and encode one row of 64 FP32 values, the
// size of a typical tabular-model request, without the HTTP layer.

const wideCols = 64

// wideModel returns a model with one input x FP32 [-1,64] and one output y
// of the same shape. Only its metadata is used: the codecs never call the
// backend.
func wideModel() *backends.ModelVersion {
	spec := []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, wideCols}}}
	out := []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, wideCols}}}
	return &backends.ModelVersion{
		Name: "wide", Version: "1", Config: config.DefaultModelConfig(),
		Meta: &backends.Metadata{Platform: "fake", Inputs: spec, Outputs: out, Concurrency: 1},
	}
}

// wideRow returns the row's values as JSON numbers (no brackets) and as
// little-endian FP32 bytes.
func wideRow() (string, []byte) {
	var js []byte
	var raw []byte
	for i := range wideCols {
		v := float32(i)*0.37 - 11.5
		if i > 0 {
			js = append(js, ',')
		}
		js = strconv.AppendFloat(js, float64(v), 'g', -1, 32)
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	return string(js), raw
}

func benchLimits() *config.Limits {
	lim := testLimits()
	return &lim
}

func BenchmarkDecodeV2JSON(b *testing.B) {
	m, lim := wideModel(), benchLimits()
	js, _ := wideRow()
	body := []byte(`{"id":"1","inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":[` + js + `]}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeV2(body, nil, m, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV2Binary(b *testing.B) {
	m, lim := wideModel(), benchLimits()
	_, raw := wideRow()
	hdr := `{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
	body := append([]byte(hdr), raw...)
	hdrLen := []byte(strconv.Itoa(len(hdr)))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeV2(body, hdrLen, m, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePredict(b *testing.B) {
	m, lim := wideModel(), benchLimits()
	js, _ := wideRow()
	body := []byte(`{"features":[` + js + `]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodePredict(body, m, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeV2(b *testing.B) {
	m := wideModel()
	_, raw := wideRow()
	y := tensor.New("y", tensor.FP32, []int64{1, wideCols})
	copy(y.Data, raw)
	out := []*tensor.Tensor{y}
	req := &Request{Model: m, id: "1", hasID: true}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = encodeV2(buf[:0], req, out)
	}
	b.SetBytes(int64(len(buf)))
}
