package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// objects is one rendered overlay, decoded strictly into the Kubernetes
// API types, by kind.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	netpols         []*networkingv1.NetworkPolicy
	serviceMonitors []*monitoringv1.ServiceMonitor
	podMonitors     []*monitoringv1.PodMonitor
}

// render runs kustomize (its Go API, as kubectl apply -k does) on dir, a
// directory under kubernetes/, reading the tree from fsys.
func render(t *testing.T, fsys filesys.FileSystem, dir string) []byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return out
}

// decodeAll splits a multi-document YAML stream and decodes every
// document strictly (unknown fields, duplicate keys and wrong types are
// errors) into the API type of its kind; a kind it does not know is an
// error too.
func decodeAll(stream []byte) (*objects, error) {
	o := &objects{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return o, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, err
		}
		var target any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			v := &appsv1.Deployment{}
			o.deployments, target = append(o.deployments, v), v
		case "v1 Service":
			v := &corev1.Service{}
			o.services, target = append(o.services, v), v
		case "v1 ConfigMap":
			v := &corev1.ConfigMap{}
			o.configMaps, target = append(o.configMaps, v), v
		case "autoscaling/v2 HorizontalPodAutoscaler":
			v := &autoscalingv2.HorizontalPodAutoscaler{}
			o.hpas, target = append(o.hpas, v), v
		case "policy/v1 PodDisruptionBudget":
			v := &policyv1.PodDisruptionBudget{}
			o.pdbs, target = append(o.pdbs, v), v
		case "networking.k8s.io/v1 NetworkPolicy":
			v := &networkingv1.NetworkPolicy{}
			o.netpols, target = append(o.netpols, v), v
		case "monitoring.coreos.com/v1 ServiceMonitor":
			v := &monitoringv1.ServiceMonitor{}
			o.serviceMonitors, target = append(o.serviceMonitors, v), v
		case "monitoring.coreos.com/v1 PodMonitor":
			v := &monitoringv1.PodMonitor{}
			o.podMonitors, target = append(o.podMonitors, v), v
		default:
			return nil, fmt.Errorf("unexpected %s %s; the test decodes no such kind", meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", meta.Kind, err, doc)
		}
	}
}

// TestDecodeStrict: the decoder the manifests are checked with rejects
// what a typo would produce.
func TestDecodeStrict(t *testing.T) {
	const dep = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n"
	f := func(doc, want string) {
		t.Helper()
		_, err := decodeAll([]byte(doc))
		if want == "" && err != nil {
			t.Errorf("decodeAll(%q) = %v; want no error", doc, err)
		}
		if want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("decodeAll(%q) = %v; want an error containing %q", doc, err, want)
		}
	}
	f(dep, "")
	f(dep+"  replicsa: 2\n", `unknown field "replicsa"`)
	f(dep+"  replicas: 2\n", `"replicas" already set`)
	f("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n", "cannot unmarshal")
	f("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "unexpected v1 Pod")
	f("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoint: []}\n", `unknown field "endpoint"`)
}

// diskTree loads the files under kubernetes/ into an in-memory file
// system at /k, so that a test can add to a kustomization without
// touching the repository.
func diskTree(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/k", strings.TrimPrefix(path, "kubernetes")), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// overlays are the deployable variants: each overlay as it is, and with the
// models-volume component added.
var overlays = []struct {
	name, dir string
	models    bool // with components/models-volume
}{
	{"sidecar", "/k/overlays/sidecar", false},
	{"standalone", "/k/overlays/standalone", false},
	{"sidecar+models-volume", "/k/overlays/sidecar", true},
	{"standalone+models-volume", "/k/overlays/standalone", true},
}

func renderOverlay(t *testing.T, dir string, models bool) *objects {
	t.Helper()
	fsys := diskTree(t)
	if models {
		k := filepath.Join(dir, "kustomization.yaml")
		b, err := fsys.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, "components:\n  - ../../components/models-volume\n"...)
		if err := fsys.WriteFile(k, b); err != nil {
			t.Fatal(err)
		}
	}
	o, err := decodeAll(render(t, fsys, dir))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return o
}
