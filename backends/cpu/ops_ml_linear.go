package cpu

import (
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// linear is the affine map of LinearClassifier and LinearRegressor:
// scores = X·Wᵀ + b for the rows of X, with W (rows×f, the coefficients
// attribute) packed once for the SGEMM driver with b (the intercepts, when
// present) folded into its epilogue. Going through the driver whatever
// the batch size keeps a row's scores independent of the batch it came
// in, and pays: BenchmarkLinearClassifier's /gemm-kernel against /dot
// (plain Go dot products), AVX-512, ns: F=4 C=3 batch 1 42 vs 22, batch
// 64 205 vs 1260; F=13 C=3 batch 64 380 vs 5700; F=64 C=10 batch 1 84 vs
// 1880, batch 64 1100 vs 111000 (a whole Infer call costs 550 ns and
// more).
type linear struct {
	rows, f int
	pb      *sgemm.Packed
	flags   int
	ks      *sgemm.Kernels
	sp      *sgemm.Splitter
}

// newLinear packs the coefficients (rows·f values) and intercepts (rows
// values, or none).
func newLinear(c *opCtx, coef, icpt []float32, rows, f int) *linear {
	var bias *tensor.Tensor
	flags := 0
	if len(icpt) > 0 {
		bias, flags = floatsView(icpt, int64(rows)), sgemm.AddBias
	}
	pb := c.packB(floatsView(coef, int64(rows), int64(f)), true, f, rows, f, 1, bias, 1)
	sp := c.sp
	if rows*f < minSplitWork {
		sp = nil // too little work per row to share (the result is the same)
	}
	return &linear{rows: rows, f: f, pb: pb, flags: flags, ks: c.ks, sp: sp}
}

// minSplitWork is the size of W (rows × features) from which a linear
// model's product is split over the helpers like Gemm's (Options.SplitRows
// rows and more). Below it handing chunks over costs more than it saves:
// LinearRegressor through Infer at batch 64, 2 cores, µs split vs not:
// F=13 C=3 1.9 vs 1.2, F=64 C=10 3.6 vs 2.7, F=64 C=64 8.5 vs 7.9, F=128
// C=64 12 vs 13.5, F=256 C=64 16.7 vs 23.
const minSplitWork = 128 * 64

// scores stores the n rows of X·Wᵀ + b, row i at y[i*ldy:].
func (l *linear) scores(n int, x []float32, y []float32, ldy int) {
	l.sp.Gemm(l.ks, n, x, l.f, l.pb, y, ldy, l.flags)
}

// linearRows returns the number of coefficient rows: one per intercept
// when there are intercepts, else as many as the coefficients hold for f
// features.
func linearRows(coef, icpt []float32, f int) (int, error) {
	if len(icpt) > 0 {
		if len(coef) != len(icpt)*f {
			return 0, invalidf("attribute coefficients has %d values, want %d (one row of %d features per intercept, %d intercepts)",
				len(coef), len(icpt)*f, f, len(icpt))
		}
		return len(icpt), nil
	}
	if f == 0 || len(coef) == 0 || len(coef)%f != 0 {
		return 0, invalidf("attribute coefficients has %d values, not a whole number of rows of %d features", len(coef), f)
	}
	return len(coef) / f, nil
}

// compileLinearClassifier compiles LinearClassifier: scores = X·Wᵀ + b,
// labels and post_transform as onnxruntime computes them
// (linearclassifier.cc):
//
//   - C ≥ 2 coefficient rows: the label is the class of the first largest
//     raw score, then post_transform applies to each row of scores
//     (SOFTMAX as the Softmax operator computes it, vectorised); one
//     class label per row is required;
//   - one row and two class labels: scores [N, 2] are [1-s, s] for the
//     raw score s whatever post_transform (onnxruntime passes
//     add_second_class=1 to its score update; its PROBIT variant fills
//     only half of the output, so PROBIT is rejected), the label is
//     labels[1] when s > 0, else labels[0];
//   - one row and no or one class label: scores [N, 1] hold s (probit(s)
//     for PROBIT; the other transforms leave it unchanged), the label is
//     1 when s > 0, else 0 ("1" and "0" with classlabels_strings).
//
// multi_class (0 or 1) does not change the computation, in onnxruntime
// either. X may be FP32, FP64, INT64 or INT32 ([N, F] or [F]); it is
// converted to FP32 first.
func compileLinearClassifier(c *opCtx) (kernel, error) {
	as := c.n.attrs
	coef, icpt, err := linearAttrs(as)
	if err != nil {
		return nil, err
	}
	ints, _, err := as.Ints("classlabels_ints")
	if err != nil {
		return nil, err
	}
	strs, _, err := as.Strings("classlabels_strings")
	if err != nil {
		return nil, err
	}
	if len(ints) > 0 && len(strs) > 0 {
		return nil, invalidf("attributes classlabels_ints and classlabels_strings are both set")
	}
	if mc, err := as.Int("multi_class", 0); err != nil || mc != 0 && mc != 1 {
		if err != nil {
			return nil, err
		}
		return nil, invalidf("attribute multi_class = %d, want 0 or 1", mc)
	}
	pt, err := parsePostTransform(as)
	if err != nil {
		return nil, err
	}
	useStrings := len(strs) > 0
	labelAttr, labels := "classlabels_ints", ints
	if useStrings {
		labelAttr, labels = "classlabels_strings", c.stringIDs(strs)
	}
	if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, err
	}
	n, f, err := mlRows(c.input(0))
	if err != nil {
		return nil, err
	}
	rows, err := linearRows(coef, icpt, f)
	if err != nil {
		return nil, err
	}
	cols, binary := rows, false
	var neg, pos int64 // labels of a single score column: s <= 0, s > 0
	switch {
	case rows >= 2:
		if len(labels) != rows {
			if len(labels) == 0 {
				return nil, invalidf("no class labels (classlabels_ints or classlabels_strings) for %d coefficient rows", rows)
			}
			return nil, invalidf("attribute %s has %d labels, want %d (one per coefficient row)", labelAttr, len(labels), rows)
		}
	case len(labels) == 2:
		if pt == postProbit {
			return nil, unsupportedf("post_transform PROBIT with one coefficient row and two class labels (onnxruntime fills half of the scores)")
		}
		cols, binary = 2, true
		neg, pos = labels[0], labels[1]
	case len(labels) > 2:
		return nil, invalidf("attribute %s has %d labels for one coefficient row, want 2 (or none: labels 0 and 1)", labelAttr, len(labels))
	case useStrings:
		neg, pos = c.stringID("0"), c.stringID("1")
	default:
		neg, pos = 0, 1
	}
	labelType := tensor.Int64
	if useStrings {
		labelType = tensor.Bytes
	}
	c.setOut(0, labelType, []int64{int64(n)})
	c.setOut(1, tensor.FP32, []int64{int64(n), int64(cols)})
	lin := newLinear(c, coef, icpt, rows, f)
	sc := new(sgemm.Scratch)
	ks := c.ks
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		if n == 0 {
			return nil
		}
		x, xbuf := float32s(in[0], sc)
		var z []float32
		var zbuf *[]float32
		if out[1] != nil {
			z = viewAs[float32](out[1].Data)
		} else {
			zbuf = sc.Get(n * cols)
			z = *zbuf
		}
		var lab []int64
		if out[0] != nil {
			lab = viewAs[int64](out[0].Data)
		}
		switch {
		case binary:
			lin.scores(n, x, z[1:], 2)
			for i := range n {
				s := z[2*i+1]
				if lab != nil {
					lab[i] = neg
					if s > 0 {
						lab[i] = pos
					}
				}
				z[2*i] = 1 - s
			}
		case cols == 1:
			lin.scores(n, x, z, 1)
			for i, s := range z[:n] {
				if lab != nil {
					lab[i] = neg
					if s > 0 {
						lab[i] = pos
					}
				}
				if pt == postProbit {
					z[i] = probit(s)
				}
			}
		default:
			// raw holds the scores before post_transform, which is skipped
			// when the scores are not an output (zbuf != nil).
			raw := z
			var rbuf *[]float32
			if pt == postSoftmax && zbuf == nil {
				rbuf = sc.Get(n * cols)
				raw = *rbuf
			}
			lin.scores(n, x, raw, cols)
			for i := range n {
				row := raw[i*cols : i*cols+cols]
				if lab != nil {
					best := 0
					for j, v := range row[1:] {
						if v > row[best] {
							best = j + 1
						}
					}
					lab[i] = labels[best]
				}
				if pt != postSoftmax && zbuf == nil {
					pt.apply(row)
				}
			}
			if pt == postSoftmax && zbuf == nil {
				// All rows at once, vectorised as the Softmax operator is.
				if !ks.SoftmaxRows(raw, z, n, cols) {
					softmaxRows32(raw, z, n, cols)
				}
			}
			if rbuf != nil {
				sc.Put(rbuf)
			}
		}
		if xbuf != nil {
			sc.Put(xbuf)
		}
		if zbuf != nil {
			sc.Put(zbuf)
		}
		return nil
	}), nil
}

// compileLinearRegressor compiles LinearRegressor: Y [N, targets] = X·Wᵀ
// + b, then post_transform. NONE and PROBIT (per value) always; with
// targets > 1 also LOGISTIC, SOFTMAX and SOFTMAX_ZERO per row, as
// onnxruntime applies them. With one target onnxruntime ignores those
// three while the spec applies them, so they are rejected. intercepts
// are absent or one per target. X may be FP32, FP64, INT64 or INT32 ([N,
// F] or [F]).
func compileLinearRegressor(c *opCtx) (kernel, error) {
	as := c.n.attrs
	coef, icpt, err := linearAttrs(as)
	if err != nil {
		return nil, err
	}
	targets, err := as.Int("targets", 1)
	if err != nil {
		return nil, err
	}
	if targets < 1 || targets > int64(max(len(coef), 1)) {
		return nil, invalidf("attribute targets = %d, want 1 or more (and at most one per coefficient)", targets)
	}
	pt, err := parsePostTransform(as)
	if err != nil {
		return nil, err
	}
	if targets == 1 && pt != postNone && pt != postProbit {
		return nil, unsupportedf("post_transform %s with one target (onnxruntime ignores it, the spec applies it)", pt)
	}
	if len(icpt) > 0 && int64(len(icpt)) != targets {
		return nil, invalidf("attribute intercepts has %d values, want %d (one per target)", len(icpt), targets)
	}
	if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, err
	}
	n, f, err := mlRows(c.input(0))
	if err != nil {
		return nil, err
	}
	t := int(targets)
	if len(coef) != t*f {
		return nil, invalidf("attribute coefficients has %d values, want %d (%d targets × %d features)", len(coef), t*f, t, f)
	}
	c.setOut(0, tensor.FP32, []int64{int64(n), int64(t)})
	lin := newLinear(c, coef, icpt, t, f)
	sc := new(sgemm.Scratch)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, xbuf := float32s(in[0], sc)
		y := viewAs[float32](out[0].Data)
		lin.scores(n, x, y, t)
		if pt != postNone {
			for i := range n {
				pt.apply(y[i*t : i*t+t])
			}
		}
		if xbuf != nil {
			sc.Put(xbuf)
		}
		return nil
	}), nil
}

// linearAttrs reads the coefficients (required) and intercepts (optional)
// attributes LinearClassifier and LinearRegressor share.
func linearAttrs(as onnx.Attrs) (coef, icpt []float32, err error) {
	coef, ok, err := as.Floats("coefficients")
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, invalidf("attribute coefficients is required")
	}
	icpt, _, err = as.Floats("intercepts")
	return coef, icpt, err
}
