package cpu

import (
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// compileCast compiles Cast between all fixed-size numeric types and BOOL
// (not from or to STRING: compileNode rejects BYTES inputs).
// Float to integer truncates toward zero; out-of-range values are
// undefined by the spec (Go's conversion result is returned). saturate
// (opset 19) only concerns float8 targets, which are unsupported, so it is
// accepted and ignored.
func compileCast(c *opCtx) (kernel, error) {
	x := c.input(0)
	if !c.n.attrs.Has("to") {
		return nil, invalidf("attribute to is required")
	}
	to, err := c.n.attrs.Int("to", 0)
	if err != nil {
		return nil, err
	}
	if _, err := c.n.attrs.Bool("saturate", true); err != nil {
		return nil, err
	}
	dt, ok := onnx.DataType(int32(to))
	if !ok || int64(int32(to)) != to || dt == tensor.Bytes {
		return nil, unsupportedf("cast to element type %d", to)
	}
	c.setOut(0, dt, clone(x.shape))
	if dt == x.dtype {
		return aliasKernel{}, nil
	}
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		castInto(out[0], in[0])
		return nil
	}), nil
}

// castInto converts src's elements into dst (same element count).
func castInto(dst, src *tensor.Tensor) {
	switch dst.DType {
	case tensor.FP32:
		castTo(viewAs[float32](dst.Data), src)
	case tensor.FP64:
		castTo(viewAs[float64](dst.Data), src)
	case tensor.Int8:
		castTo(viewAs[int8](dst.Data), src)
	case tensor.Int16:
		castTo(viewAs[int16](dst.Data), src)
	case tensor.Int32:
		castTo(viewAs[int32](dst.Data), src)
	case tensor.Int64:
		castTo(viewAs[int64](dst.Data), src)
	case tensor.Uint8:
		castTo(viewAs[uint8](dst.Data), src)
	case tensor.Uint16:
		castTo(viewAs[uint16](dst.Data), src)
	case tensor.Uint32:
		castTo(viewAs[uint32](dst.Data), src)
	case tensor.Uint64:
		castTo(viewAs[uint64](dst.Data), src)
	case tensor.Bool:
		castToBool(dst.Data, src)
	default: // FP16, BF16: through float64, which holds every value exactly
		for i := range src.Len() {
			dst.SetFloat64(i, src.Float64At(i))
		}
	}
}

// castTo converts src into dst by Go conversion.
func castTo[D number](dst []D, src *tensor.Tensor) {
	switch src.DType {
	case tensor.FP32:
		convert(dst, viewAs[float32](src.Data))
	case tensor.FP64:
		convert(dst, viewAs[float64](src.Data))
	case tensor.Int8:
		convert(dst, viewAs[int8](src.Data))
	case tensor.Int16:
		convert(dst, viewAs[int16](src.Data))
	case tensor.Int32:
		convert(dst, viewAs[int32](src.Data))
	case tensor.Int64:
		convert(dst, viewAs[int64](src.Data))
	case tensor.Uint8, tensor.Bool:
		convert(dst, viewAs[uint8](src.Data))
	case tensor.Uint16:
		convert(dst, viewAs[uint16](src.Data))
	case tensor.Uint32:
		convert(dst, viewAs[uint32](src.Data))
	case tensor.Uint64:
		convert(dst, viewAs[uint64](src.Data))
	default: // FP16, BF16
		for i := range dst {
			dst[i] = D(src.Float64At(i))
		}
	}
}

func convert[D, S number](dst []D, src []S) {
	for i, v := range src {
		dst[i] = D(v)
	}
}

// castToBool stores 1 for every non-zero element of src (NaN included).
func castToBool(dst []byte, src *tensor.Tensor) {
	for i := range dst {
		v := src.Float64At(i)
		if v != 0 {
			dst[i] = 1
		} else {
			dst[i] = 0
		}
	}
}
