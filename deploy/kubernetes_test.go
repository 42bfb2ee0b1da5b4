package deploy

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/coalesce-ml/coalesce/config"
)

// loadConfigMap loads the coalesce.yaml of the rendered ConfigMap with
// Coalesce's own loader (unknown keys and bad values fail as they would at
// start-up), with the model repository pointed at the repository's.
func loadConfigMap(t *testing.T, o *objects) *config.Config {
	t.Helper()
	if len(o.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps; want 1 (coalesce.yaml)", len(o.configMaps))
	}
	data, ok := o.configMaps[0].Data["coalesce.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no coalesce.yaml", o.configMaps[0].Name)
	}
	path := filepath.Join(t.TempDir(), "coalesce.yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := config.Flags("test")
	if err := fs.Parse([]string{"--config", path, "--models.repository", "../models"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fs, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's coalesce.yaml does not load: %v", err)
	}
	return cfg
}

// imageUser returns the numeric uid and gid of the Dockerfile's last USER.
func imageUser(t *testing.T) (uid, gid int64) {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	user := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "USER" {
			user = fields[1]
		}
	}
	u, g, ok := numericUser(user)
	if !ok {
		t.Fatalf("Dockerfile USER %q is not numeric uid:gid", user)
	}
	return int64(u), int64(g)
}

func addrPort(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("%s %q has no port", key, addr)
	}
	return int32(n)
}

// portNumber resolves a probe's or Service's port (number or name) on c.
func portNumber(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

// coalesceContainer returns the Coalesce container of a pod and whether it
// is an init container (a native sidecar).
func coalesceContainer(t *testing.T, spec *corev1.PodSpec) (*corev1.Container, bool) {
	t.Helper()
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "coalesce" {
			return &spec.InitContainers[i], true
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == "coalesce" {
			return &spec.Containers[i], false
		}
	}
	t.Fatal("the pod has no container named coalesce")
	return nil, false
}

// TestOverlays renders every overlay, decodes it strictly, and checks what
// both must get right.
func TestOverlays(t *testing.T) {
	uid, gid := imageUser(t)
	for _, ov := range overlays {
		t.Run(ov.name, func(t *testing.T) {
			o := renderOverlay(t, ov.dir, ov.models)
			cfg := loadConfigMap(t, o)
			if len(o.deployments) != 1 {
				t.Fatalf("%d Deployments; want 1", len(o.deployments))
			}
			d := o.deployments[0]
			checkSelector(t, "Deployment "+d.Name, d.Spec.Selector, d.Spec.Template.Labels)
			pod := &d.Spec.Template.Spec
			c, _ := coalesceContainer(t, pod)

			// Probes on the data plane's port of the configuration.
			httpPort := addrPort(t, "http.addr", cfg.HTTP.Addr)
			adminPort := addrPort(t, "admin.addr", cfg.Admin.Addr)
			probes := []struct {
				name string
				p    *corev1.Probe
				path string
			}{{"startupProbe", c.StartupProbe, "/v2/health/live"}, {"livenessProbe", c.LivenessProbe, "/v2/health/live"}, {"readinessProbe", c.ReadinessProbe, "/v2/health/ready"}}
			for _, pr := range probes {
				if pr.p == nil || pr.p.HTTPGet == nil {
					t.Errorf("coalesce has no HTTP %s", pr.name)
					continue
				}
				if pr.p.HTTPGet.Path != pr.path || portNumber(c, pr.p.HTTPGet.Port) != httpPort {
					t.Errorf("coalesce %s = %s on port %v (%d); want %s on http.addr's port %d",
						pr.name, pr.p.HTTPGet.Path, pr.p.HTTPGet.Port.String(), portNumber(c, pr.p.HTTPGet.Port), pr.path, httpPort)
				}
			}
			if sp := c.StartupProbe; sp != nil && sp.FailureThreshold*max(sp.PeriodSeconds, 1) < 60 {
				t.Errorf("startupProbe allows %ds; want at least 60s for loading models", sp.FailureThreshold*sp.PeriodSeconds)
			}
			if portNumber(c, intstr.FromString("http")) != httpPort || portNumber(c, intstr.FromString("metrics")) != adminPort {
				t.Errorf("container ports %v; want http %d and metrics %d as in the configuration", c.Ports, httpPort, adminPort)
			}

			// Every container: limits and requests, a pinned image, locked down.
			for _, ctr := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
				checkContainer(t, &ctr)
			}
			if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid {
				t.Errorf("coalesce runAsUser/runAsGroup are not the image's USER %d:%d", uid, gid)
			}
			if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("the pod's securityContext lacks runAsNonRoot: true")
			}

			// GOMEMLIMIT from the container's own memory limit.
			var gomem *corev1.EnvVar
			for i := range c.Env {
				if c.Env[i].Name == "GOMEMLIMIT" {
					gomem = &c.Env[i]
				}
			}
			if gomem == nil || gomem.ValueFrom == nil || gomem.ValueFrom.ResourceFieldRef == nil ||
				gomem.ValueFrom.ResourceFieldRef.Resource != "limits.memory" || gomem.ValueFrom.ResourceFieldRef.ContainerName != "coalesce" {
				t.Errorf("GOMEMLIMIT = %+v; want it from resourceFieldRef limits.memory of coalesce", gomem)
			} else if dv := gomem.ValueFrom.ResourceFieldRef.Divisor; !dv.IsZero() && dv.Cmp(resource.MustParse("1")) != 0 {
				t.Errorf("GOMEMLIMIT divisor %s; want bytes (GOMEMLIMIT reads a bare number as bytes)", dv.String())
			}

			// The configuration file is the ConfigMap's, where the args say.
			checkMounts(t, pod, c, o.configMaps[0].Name, ov.models)

			// The grace period covers the drain and the in-flight requests.
			need := int64((cfg.Shutdown.DrainDelay + cfg.Shutdown.GracePeriod).Seconds())
			if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= need {
				t.Errorf("terminationGracePeriodSeconds = %v; want more than shutdown.drain_delay + grace_period = %ds", g, need)
			}
		})
	}
}

func checkSelector(t *testing.T, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s selector %v does not select the pod labels %v (%v)", what, sel, podLabels, err)
	}
}

func checkContainer(t *testing.T, c *corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		lim, okL := c.Resources.Limits[r]
		req, okR := c.Resources.Requests[r]
		if !okL || !okR || lim.Cmp(req) < 0 {
			t.Errorf("container %s: %s request %v, limit %v; want both, request <= limit", c.Name, r, req.String(), lim.String())
		}
	}
	name, tag := c.Image, ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
	}
	if !strings.Contains(c.Image, "@sha256:") && (tag == "" || tag == "latest") {
		t.Errorf("container %s: image %q; want a pinned tag or digest, not latest", c.Name, c.Image)
	}
	if !strings.Contains(name, "/") {
		t.Errorf("container %s: image %q has no registry path; kustomize's images: did not apply", c.Name, c.Image)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("container %s has no securityContext", c.Name)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("container %s: runAsNonRoot is not true", c.Name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0:
		t.Errorf("container %s: capabilities %+v; want drop [ALL], add none", c.Name, sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container %s: seccompProfile is not RuntimeDefault", c.Name)
	}
}

// checkMounts: --config names a file in the mounted ConfigMap, /tmp is a
// writable emptyDir (the root file system is read-only), and with the
// models-volume component the claim is mounted over the models.
func checkMounts(t *testing.T, pod *corev1.PodSpec, c *corev1.Container, configMap string, models bool) {
	t.Helper()
	volumes := map[string]*corev1.Volume{}
	for i := range pod.Volumes {
		volumes[pod.Volumes[i].Name] = &pod.Volumes[i]
	}
	mounts := map[string]*corev1.Volume{}
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		if v == nil {
			t.Errorf("coalesce mounts %s, which the pod does not define", m.Name)
			continue
		}
		mounts[m.MountPath] = v
	}
	configFile := ""
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			configFile = c.Args[i+1]
		}
	}
	if v := mounts[filepath.Dir(configFile)]; configFile == "" || v == nil || v.ConfigMap == nil || v.ConfigMap.Name != configMap {
		t.Errorf("coalesce args %v: --config %q is not in a mount of ConfigMap %s", c.Args, configFile, configMap)
	}
	if v := mounts["/tmp"]; v == nil || v.EmptyDir == nil {
		t.Error("coalesce has no emptyDir at /tmp")
	}
	v := mounts["/app/models"]
	if models != (v != nil && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ReadOnly) {
		t.Errorf("models-volume component %v, but /app/models is mounted from %+v", models, v)
	}
}

// TestSidecarOverlay: Coalesce is a native sidecar of the application,
// which calls it on localhost at the data plane's port.
func TestSidecarOverlay(t *testing.T) {
	o := renderOverlay(t, "/k/overlays/sidecar", false)
	cfg := loadConfigMap(t, o)
	d := o.deployments[0]
	pod := &d.Spec.Template.Spec
	c, isInit := coalesceContainer(t, pod)
	if !isInit || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("coalesce is not an init container with restartPolicy Always (a native sidecar)")
	}
	if pod.InitContainers[0].Name != "coalesce" {
		t.Errorf("coalesce is init container %q's follower; want it first, so that it starts first", pod.InitContainers[0].Name)
	}
	if len(pod.Containers) != 1 || pod.Containers[0].Name == "coalesce" {
		t.Fatalf("containers %v; want only the application", pod.Containers)
	}
	want := "http://localhost:" + strconv.Itoa(int(addrPort(t, "http.addr", cfg.HTTP.Addr)))
	found := false
	for _, e := range pod.Containers[0].Env {
		found = found || e.Value == want
	}
	if !found {
		t.Errorf("the application has no environment variable %s", want)
	}
	if len(o.services) != 0 || len(o.hpas) != 0 {
		t.Errorf("sidecar overlay has %d Services and %d HPAs; want none (the application's own)", len(o.services), len(o.hpas))
	}
	if len(o.podMonitors) != 1 {
		t.Fatalf("%d PodMonitors; want 1", len(o.podMonitors))
	}
	pm := o.podMonitors[0]
	checkSelector(t, "PodMonitor", &pm.Spec.Selector, d.Spec.Template.Labels)
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		if ep.Port == nil || portNumber(c, intstr.FromString(*ep.Port)) != addrPort(t, "admin.addr", cfg.Admin.Addr) {
			t.Errorf("PodMonitor endpoint port %v is not coalesce's admin port", ep.Port)
		}
	}
}

// TestStandaloneOverlay: the Service, autoscaler, disruption budget,
// network policy and ServiceMonitor point at the Deployment's pods and
// ports.
func TestStandaloneOverlay(t *testing.T) {
	o := renderOverlay(t, "/k/overlays/standalone", false)
	cfg := loadConfigMap(t, o)
	d := o.deployments[0]
	podLabels := d.Spec.Template.Labels
	c, isInit := coalesceContainer(t, &d.Spec.Template.Spec)
	if isInit {
		t.Fatal("standalone: coalesce is an init container")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %v; want at least 2", d.Spec.Replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy %+v; want RollingUpdate with maxUnavailable 0", d.Spec.Strategy)
	}
	if len(o.services) != 1 || len(o.hpas) != 1 || len(o.pdbs) != 1 || len(o.netpols) != 1 || len(o.serviceMonitors) != 1 {
		t.Fatalf("Services %d, HPAs %d, PDBs %d, NetworkPolicies %d, ServiceMonitors %d; want one each",
			len(o.services), len(o.hpas), len(o.pdbs), len(o.netpols), len(o.serviceMonitors))
	}
	svc := o.services[0]
	checkSelector(t, "Service", &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, podLabels)
	svcPorts := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = portNumber(c, p.TargetPort)
	}
	if svcPorts["http"] != addrPort(t, "http.addr", cfg.HTTP.Addr) || svcPorts["metrics"] != addrPort(t, "admin.addr", cfg.Admin.Addr) {
		t.Errorf("Service target ports %v; want http -> http.addr's, metrics -> admin.addr's", svcPorts)
	}
	if ref := o.hpas[0].Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HPA scales %s/%s; want Deployment/%s", ref.Kind, ref.Name, d.Name)
	}
	if h := o.hpas[0].Spec; h.MinReplicas == nil || *h.MinReplicas < 2 || h.MaxReplicas < *h.MinReplicas {
		t.Errorf("HPA replicas %v..%d; want a minimum of at least 2", h.MinReplicas, h.MaxReplicas)
	}
	checkSelector(t, "PodDisruptionBudget", o.pdbs[0].Spec.Selector, podLabels)
	np := o.netpols[0]
	checkSelector(t, "NetworkPolicy", &np.Spec.PodSelector, podLabels)
	allowed := map[int32]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			allowed[portNumber(c, *p.Port)] = true
		}
	}
	for _, key := range []string{"http.addr", "admin.addr"} {
		addr := cfg.HTTP.Addr
		if key == "admin.addr" {
			addr = cfg.Admin.Addr
		}
		if p := addrPort(t, key, addr); !allowed[p] {
			t.Errorf("NetworkPolicy admits no traffic to port %d (%s)", p, key)
		}
	}
	sm := o.serviceMonitors[0]
	checkSelector(t, "ServiceMonitor", &sm.Spec.Selector, svc.Labels)
	for _, ep := range sm.Spec.Endpoints {
		if _, ok := svcPorts[ep.Port]; !ok || ep.Port != "metrics" {
			t.Errorf("ServiceMonitor endpoint port %q; want the Service's metrics port", ep.Port)
		}
	}
}
