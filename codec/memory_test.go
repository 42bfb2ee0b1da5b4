package codec_test

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The memory tests decode large and hostile bodies through the exported
// API only, so that the same file measures any version of the package
// (the figures of the commit that introduced the in-place decoder were
// taken by running it on the version before).

const mib = 1 << 20

// memModel returns a model of one input x FP32 [-1,64] (or, with strs,
// s BYTES [-1]) and one output.
func memModel(strs bool) *backends.ModelVersion {
	in := backends.TensorSpec{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 64}}
	if strs {
		in = backends.TensorSpec{Name: "s", DType: tensor.Bytes, Shape: []int64{-1}}
	}
	return &backends.ModelVersion{
		Name: "m", Version: "1", Config: config.DefaultModelConfig(),
		Meta: &backends.Metadata{Platform: "fake", Concurrency: 1, Inputs: []backends.TensorSpec{in},
			Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 1}}}},
	}
}

func memLimits() *config.Limits {
	return &config.Limits{MaxBodyBytes: 64 * mib, MaxTensorElements: 1 << 24, MaxJSONDepth: 16}
}

type hdr map[string]string

func (h hdr) Peek(k string) []byte {
	if v, ok := h[k]; ok {
		return []byte(v)
	}
	return nil
}

// repeatTo returns prefix + n copies of elem joined by sep + suffix, with
// n the largest that keeps the whole within size bytes (at least 1).
func repeatTo(size int, prefix, elem, sep, suffix string) (string, int) {
	n := max(1, (size-len(prefix)-len(suffix)+len(sep))/(len(elem)+len(sep)))
	return prefix + strings.Repeat(elem+sep, n-1) + elem + suffix, n
}

// row64 is one row of 64 FP32 features.
var row64 = "[" + strings.TrimSuffix(strings.Repeat("0.5,", 64), ",") + "]"

// smallX is a valid V2 input x of one row.
var smallX = `{"name":"x","shape":[1,64],"datatype":"FP32","data":` + row64 + `}`

// memCase is one body to decode: build returns it and the size of the
// tensor it decodes to (0 for none, or none that dominates); ok says
// whether it must decode.
type memCase struct {
	name   string
	codec  codec.Codec
	strs   bool
	header hdr
	ok     bool
	build  func(size int) (body string, tensorBytes int)
}

// memCases are bodies of any size, built on demand so that a process
// running one case holds only its body.
var memCases = []memCase{
	// Rows of 64 numbers: the predict fast path, the general path (an
	// extra key makes the fast path decline), V2 data, TF Serving rows
	// and columns.
	{name: "predict-rows", codec: codec.Predict, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"features":[`, row64, ",", `]}`)
		return body, rows * 256
	}},
	{name: "predict-general", codec: codec.Predict, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"x":1,"features":[`, row64, ",", `]}`)
		return body, rows * 256
	}},
	{name: "v2-data", codec: codec.V2, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"inputs":[{"name":"x","datatype":"FP32","data":[`, row64, ",", `]`)
		return strings.TrimSuffix(body, "]") + `],"shape":[` + strconv.Itoa(rows) + `,64]}]}`, rows * 256
	}},
	{name: "tfs-instances", codec: codec.TFS, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"instances":[`, row64, ",", `]}`)
		return body, rows * 256
	}},
	{name: "tfs-instance-objects", codec: codec.TFS, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"instances":[`, `{"x":`+row64+`}`, ",", `]}`)
		return body, rows * 256
	}},
	{name: "tfs-columns", codec: codec.TFS, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"inputs":{"x":[`, row64, ",", `]}}`)
		return body, rows * 256
	}},
	// V2 data nested 12 deep around every value, 16 deep in the body
	// (the depth limit).
	{name: "v2-nested", codec: codec.V2, ok: true, build: func(size int) (string, int) {
		deep := strings.Repeat("[", 12) + "0.5" + strings.Repeat("]", 12)
		_, n := repeatTo(size, `{"inputs":[{"name":"x","datatype":"FP32","shape":[0,64],"data":[`, deep, ",", `]}]}`)
		n -= n % 64
		return `{"inputs":[{"name":"x","datatype":"FP32","shape":[` + strconv.Itoa(n/64) + `,64],"data":[` +
			strings.TrimSuffix(strings.Repeat(deep+",", n), ",") + `]}]}`, n * 4
	}},
	// Hostile: a timeout that is a huge array, huge unknown fields, a
	// huge id (kept: it is echoed), a huge signature name, huge strings.
	{name: "v2-timeout-array", codec: codec.V2, build: func(size int) (string, int) {
		body, _ := repeatTo(size, `{"parameters":{"timeout":[`, "0", ",", `]},"inputs":[`+smallX+`]}`)
		return body, 0
	}},
	{name: "v2-unknown-field", codec: codec.V2, ok: true, build: func(size int) (string, int) {
		body, _ := repeatTo(size, `{"junk":[`, `{"a":[1,2,[3,{"b":null}]],"c":"xyz"}`, ",", `],"inputs":[`+smallX+`]}`)
		return body, 256
	}},
	{name: "v2-unknown-nested", codec: codec.V2, ok: true, build: func(size int) (string, int) {
		body, _ := repeatTo(size, `{"junk":[`, `[[[[[[[[[[[[[[1]]]]]]]]]]]]]]`, ",", `],"inputs":[`+smallX+`]}`)
		return body, 256
	}},
	{name: "v2-huge-id", codec: codec.V2, ok: true, build: func(size int) (string, int) {
		return `{"id":"` + strings.Repeat("a", size) + `","inputs":[` + smallX + `]}`, 0
	}},
	{name: "tfs-huge-signature", codec: codec.TFS, build: func(size int) (string, int) {
		return `{"signature_name":"` + strings.Repeat("a", size) + `","instances":[` + row64 + `]}`, 0
	}},
	{name: "tfs-unknown-field", codec: codec.TFS, ok: true, build: func(size int) (string, int) {
		body, _ := repeatTo(size, `{"instances":[`+row64+`],"junk":{"k":[`, `"abcdefgh"`, ",", `]}}`)
		return body, 256
	}},
	{name: "v2-many-inputs", codec: codec.V2, build: func(size int) (string, int) {
		// Distinct unknown inputs, each a tensor of its own until the
		// model's names are checked at the end.
		var b strings.Builder
		b.WriteString(`{"inputs":[`)
		for i := 0; b.Len() < size-64; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"name":"i` + strconv.Itoa(i) + `","shape":[0],"datatype":"FP32","data":[]}`)
		}
		b.WriteString(`]}`)
		return b.String(), 0
	}},
	{name: "v2-strings", codec: codec.V2, strs: true, ok: true, build: func(size int) (string, int) {
		body, rows := repeatTo(size, `{"inputs":[{"name":"s","datatype":"BYTES","data":[`, `"`+strings.Repeat("s", 60)+`"`, ",", `]`)
		return strings.TrimSuffix(body, "]") + `],"shape":[` + strconv.Itoa(rows) + `]}]}`, rows * 64
	}},
}

// allocated returns the bytes allocated by one call of f (TotalAlloc, an
// upper bound of the extra heap at any time during the call).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeMemory decodes bodies of 1, 4 and 16 MiB of every protocol,
// valid and hostile, and checks that one decode allocates at most 8× the
// body plus 16 MiB, and that a body decoding to a tensor allocates about
// the tensor. With -v it logs each case's bytes allocated; a process
// running one case (-run 'TestDecodeMemory/v2-data/16MiB') holds only its
// body, for measuring peak RSS from outside.
func TestDecodeMemory(t *testing.T) {
	sizes := []int{1 * mib, 4 * mib, 16 * mib}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, size := range sizes {
		for _, c := range memCases {
			t.Run(fmt.Sprintf("%s/%dMiB", c.name, size/mib), func(t *testing.T) {
				lim := memLimits()
				m := memModel(c.strs)
				s, tensorBytes := c.build(size)
				body := []byte(s)
				s = ""
				var err error
				got := allocated(func() {
					r := codec.AcquireRequest(m, lim)
					err = c.codec.Decode(r, body, c.header)
					codec.ReleaseRequest(r)
				})
				t.Logf("%s %d bytes: allocated %.1f MiB (%.2f× the body), err %.80v",
					c.name, len(body), float64(got)/mib, float64(got)/float64(len(body)), err)
				if (err == nil) != c.ok {
					t.Fatalf("Decode = %v; want ok %v", err, c.ok)
				}
				if limit := uint64(8*len(body) + 16*mib); got > limit {
					t.Errorf("one decode of %d bytes allocated %d bytes; want at most 8× the body + 16 MiB = %d", len(body), got, limit)
				}
				// A tensor-sized case allocates about the tensor.
				if tensorBytes > 0 {
					if limit := uint64(tensorBytes + tensorBytes/4 + 256<<10); got > limit {
						t.Errorf("decoding a %d-byte tensor allocated %d bytes; want at most 1.25× the tensor + 256 KiB = %d", tensorBytes, got, limit)
					}
				}
			})
		}
	}
}

// TestDeclaredShapeNotAllocated: a tiny V2 body declaring a huge shape
// allocates nothing sized by the shape before its data proves it.
func TestDeclaredShapeNotAllocated(t *testing.T) {
	lim := memLimits()
	m := memModel(false)
	const shape = `"shape":[65536,64],"datatype":"FP64"`
	binHdr := `{"inputs":[{"name":"x",` + shape + `,"parameters":{"binary_data_size":33554432}}]}`
	tests := []struct {
		name string
		body string
		h    hdr
		want string
	}{
		{"no data", `{"inputs":[{"name":"x",` + shape + `}]}`, nil, "inputs[0].data: missing"},
		{"short data", `{"inputs":[{"name":"x",` + shape + `,"data":[1,2]}]}`, nil, "inputs[0].data: has 2 values; want 4194304"},
		{"short nested data", `{"inputs":[{"name":"x",` + shape + `,"data":[[1],[2,[3]]]}]}`, nil, "has 3 values; want 4194304"},
		{"bad value in short data", `{"inputs":[{"name":"x",` + shape + `,"data":[1,"a"]}]}`, nil, "inputs[0].data: element 1 is string"},
		{"binary size without the bytes", binHdr, hdr{"Inference-Header-Content-Length": strconv.Itoa(len(binHdr))}, "binary_data_size: 33554432 bytes but only 0 bytes"},
		{"tfs ragged rows", `{"instances":[[` + strings.Repeat("1,", 1<<12) + `1],[1]]}`, nil, "instances[1]: has 1 elements; want 4097"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := codec.V2
			if strings.HasPrefix(tt.name, "tfs") {
				c = codec.TFS
			}
			var err error
			got := allocated(func() {
				r := codec.AcquireRequest(m, lim)
				err = c.Decode(r, []byte(tt.body), tt.h)
				codec.ReleaseRequest(r)
			})
			t.Logf("%d-byte body: allocated %d bytes, err %v", len(tt.body), got, err)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v; want an error containing %q", err, tt.want)
			}
			if got >= 1<<20 {
				t.Errorf("a %d-byte body declaring %s allocated %d bytes; want < 1 MiB", len(tt.body), shape, got)
			}
		})
	}
}

// BenchmarkLargeBody decodes the 4 MiB bodies of TestDecodeMemory: time
// and bytes per decode of a large body (the request-path benchmarks are
// BenchmarkDecode*, of one small row).
func BenchmarkLargeBody(b *testing.B) {
	for _, c := range memCases {
		b.Run(c.name, func(b *testing.B) {
			lim := memLimits()
			m := memModel(c.strs)
			s, _ := c.build(4 * mib)
			body := []byte(s)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := codec.AcquireRequest(m, lim)
				if err := c.codec.Decode(r, body, c.header); (err == nil) != c.ok {
					b.Fatalf("Decode = %v; want ok %v", err, c.ok)
				}
				codec.ReleaseRequest(r)
			}
		})
	}
}
