package proxy

import (
	"strconv"
	"strings"
	"testing"
)

// TestLabelsRoute: the double model's labels (stable: 1, canary: 2) pick
// the version on TF Serving's label paths, V2's Coalesce-Model-Label
// header or parameters.coalesce-model-label and /predict's ?label=; a
// version number wins over a label; an unknown label is 404; a header and
// a parameter naming different labels are 400.
func TestLabelsRoute(t *testing.T) {
	_, c, _ := testServer(t)
	const v2body = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`
	const binHeader = `{"parameters":{"coalesce-model-label":"stable"},"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":16}}]}`
	v2param := func(label string) string {
		return `{"parameters":{"priority":0,"coalesce-model-label":"` + label + `"},"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`
	}
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		want                     string
	}{
		{"tfs status by label", "GET", "/v1/models/double/labels/stable", "", nil, 200, `{"model_version_status":[{"version":"1","state":"AVAILABLE"`},
		{"tfs metadata by label", "GET", "/v1/models/double/labels/canary/metadata", "", nil, 200, `"version":"2"}`},
		{"tfs predict by label", "POST", "/v1/models/double/labels/stable:predict", `{"instances":[[1,2,3,4]]}`, nil, 200, `{"predictions":`},
		{"tfs unknown label", "POST", "/v1/models/double/labels/nope:predict", `{"instances":[[1,2,3,4]]}`, nil, 404, "no version labelled nope"},
		{"v2 header stable", "POST", "/v2/models/double/infer", v2body, []string{"Coalesce-Model-Label", "stable"}, 200, `"model_version":"1"`},
		{"v2 header canary", "POST", "/v2/models/double/infer", v2body, []string{"Coalesce-Model-Label", "canary"}, 200, `"model_version":"2"`},
		{"v2 no label", "POST", "/v2/models/double/infer", v2body, nil, 200, `"model_version":"2"`},
		{"v2 version wins", "POST", "/v2/models/double/versions/2/infer", v2body, []string{"Coalesce-Model-Label", "stable"}, 200, `"model_version":"2"`},
		{"v2 unknown label", "POST", "/v2/models/double/infer", v2body, []string{"Coalesce-Model-Label", "nope"}, 404, "no version labelled nope"},
		{"v2 label on unlabelled model", "POST", "/v2/models/zip/infer", v2body, []string{"Coalesce-Model-Label", "stable"}, 404, "model zip has no version labelled stable"},
		{"v2 parameter stable", "POST", "/v2/models/double/infer", v2param("stable"), nil, 200, `"model_version":"1"`},
		{"v2 parameter canary", "POST", "/v2/models/double/infer", v2param("canary"), nil, 200, `"model_version":"2"`},
		{"v2 parameter unknown", "POST", "/v2/models/double/infer", v2param("nope"), nil, 404, "no version labelled nope"},
		{"v2 version wins over parameter", "POST", "/v2/models/double/versions/2/infer", v2param("stable"), nil, 200, `"model_version":"2"`},
		{"v2 header and parameter agree", "POST", "/v2/models/double/infer", v2param("stable"), []string{"Coalesce-Model-Label", "stable"}, 200, `"model_version":"1"`},
		{"v2 header and parameter differ", "POST", "/v2/models/double/infer", v2param("stable"), []string{"Coalesce-Model-Label", "canary"}, 400,
			`header Coalesce-Model-Label \"canary\" and parameters.coalesce-model-label \"stable\" name different version labels`},
		{"v2 parameter not a string", "POST", "/v2/models/double/infer", `{"parameters":{"coalesce-model-label":1},"inputs":[]}`, nil, 400, "parameters.coalesce-model-label: got number; want a string"},
		{"v2 parameter escaped", "POST", "/v2/models/double/infer", strings.Replace(v2param("stable"), "stable", `st\u0061ble`, 1), nil, 200, `"model_version":"1"`},
		{"v2 parameter binary body", "POST", "/v2/models/double/infer", binHeader + strings.Repeat("\x00\x00\x80\x3f", 4),
			[]string{"Inference-Header-Content-Length", strconv.Itoa(len(binHeader))}, 200, `"model_version":"1"`},
		{"predict query label", "POST", "/predict?label=stable", `{"features":[1,2,3,4]}`, nil, 200, `{"prediction":["d"]}`},
		{"predict header label", "POST", "/predict", `{"features":[1,2,3,4]}`, []string{"Coalesce-Model-Label", "nope"}, 404, "no version labelled nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			r := do(t, c, tt.method, tt.path, body, tt.headers...)
			if r.status != tt.status || !strings.Contains(r.body, tt.want) {
				t.Errorf("%s %s = %d %s; want %d containing %s", tt.method, tt.path, r.status, r.body, tt.status, tt.want)
			}
		})
	}
}
