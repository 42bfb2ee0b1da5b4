package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/drift"
)

// profileFile is a model's reference profile, beside its config.yaml.
const profileFile = "profile.json"

// newDrift returns the drift handle of a new model version: nil when
// drift is off or the model has no profile. A profile that does not load
// or fit the model is logged and the version served without drift.
func (s *Server) newDrift(m *backends.ModelVersion) *drift.Handle {
	dc := s.cfg.Drift
	if !dc.Enabled || dc.SampleRate == 0 || m.Path == "" {
		return nil
	}
	path := filepath.Join(filepath.Dir(filepath.Dir(m.Path)), profileFile)
	p, err := drift.LoadProfile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var h *drift.Handle
	if err == nil {
		h, err = drift.New(drift.Config{SampleRate: dc.SampleRate, Window: dc.Window, SubWindows: dc.SubWindows,
			MinSamples: dc.MinSamples, MaxFeatures: dc.MaxFeatures, Slots: dc.Slots, MaxRows: dc.MaxRows,
			Interval: dc.Interval, FeedbackEntries: dc.FeedbackEntries}, p, m, s.set, dc.Feedback)
	}
	if err != nil {
		s.log.Error("model served without drift detection", "model", m.Name, "version", m.Version, "profile", path, "err", err)
		return nil
	}
	return h
}

// closeDrift closes the drift handles of the versions reg no longer
// holds, before Update creates those of their replacements: a new load
// of a version reuses its series, which a later Close would remove.
// Requests still on sn then sample nothing (a closed handle drops).
func (sn *snapshot) closeDrift(reg *backends.Registry) {
	if sn == nil {
		return
	}
	held := map[*backends.ModelVersion]bool{}
	for _, m := range reg.All() {
		held[m] = true
	}
	for m, e := range sn.entries {
		if !held[m] {
			e.drift.Close()
		}
	}
}

// versionsOf returns the served entries of model name with a drift
// handle, newest version first.
func (sn *snapshot) versionsOf(name string) []*entry {
	var es []*entry
	for m, e := range sn.entries {
		if m.Name == name && e.drift != nil {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return versionCmp(b.Version, a.Version) })
	return es
}

func versionCmp(a, b string) int {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return bytes.Compare([]byte(a), []byte(b))
}

// serveDrift answers GET /admin/drift/{model}: for each served version
// of the model with a profile, its drift over the window (drift.Report),
// features ranked by PSI.
func (s *Server) serveDrift(ctx *fasthttp.RequestCtx, name string) error {
	if !isGet(ctx) {
		return methodNotAllowed(ctx, "GET")
	}
	es, err := s.driftEntries(name)
	if err != nil {
		return err
	}
	reps := make([]*drift.Report, len(es))
	for i, e := range es {
		reps[i] = e.drift.Report()
	}
	return writeJSON(ctx, map[string]any{"model": name, "versions": reps})
}

func (s *Server) driftEntries(name string) ([]*entry, error) {
	es := s.snap.Load().versionsOf(name)
	if len(es) == 0 {
		return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "model " + strconv.Quote(truncate(name)) + " is not served with drift detection; want a served model with " + profileFile + " and drift.enabled"}
	}
	return es, nil
}

// feedbackBody is the body of POST /admin/feedback/{model}: the request
// id the prediction was answered under (its X-Request-Id) and the truth,
// a number or a string label.
type feedbackBody struct {
	ID    string          `json:"id"`
	Truth json.RawMessage `json:"truth"`
}

// serveFeedback answers POST /admin/feedback/{model}: it joins the truth
// with the sampled prediction of the request id, in whichever served
// version of the model sampled it. 404 when none did (not sampled, or
// evicted from the bounded table), 409 on a second truth for the id.
func (s *Server) serveFeedback(ctx *fasthttp.RequestCtx, name string) error {
	if !ctx.IsPost() {
		return methodNotAllowed(ctx, "POST")
	}
	var fb feedbackBody
	if err := json.Unmarshal(ctx.PostBody(), &fb); err != nil || fb.ID == "" || len(fb.Truth) == 0 {
		return badRequest(`feedback body: want {"id": "<X-Request-Id of the request>", "truth": <label or value>}`)
	}
	truth := string(fb.Truth)
	var str string
	if json.Unmarshal(fb.Truth, &str) == nil {
		truth = str
	}
	es, err := s.driftEntries(name)
	if err != nil {
		return err
	}
	for _, e := range es {
		err = e.drift.Feedback(fb.ID, truth)
		switch {
		case err == nil:
			return writeJSON(ctx, map[string]any{"model": name, "version": e.Version, "joined": true})
		case errors.Is(err, drift.ErrDuplicate):
			return &Error{Status: fasthttp.StatusConflict, Msg: "feedback for request id " + strconv.Quote(truncate(fb.ID)) + " arrived already"}
		case errors.Is(err, drift.ErrUnknownID), errors.Is(err, drift.ErrNoFeedback):
			continue
		default:
			return badRequest("feedback truth: %v", err)
		}
	}
	return &Error{Status: fasthttp.StatusNotFound, Msg: "no sampled prediction of model " + strconv.Quote(truncate(name)) + " has request id " + strconv.Quote(truncate(fb.ID)) + "; only sampled requests (drift.sample_rate) are kept, drift.feedback_entries of them"}
}

func writeJSON(ctx *fasthttp.RequestCtx, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}
