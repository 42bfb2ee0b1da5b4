// Package deploy holds the tests of Coalesce's deployment files: the
// container image (TestImage), the Kubernetes manifests under kubernetes/
// (rendered with kustomize's Go API and decoded strictly into the
// Kubernetes API types), the Prometheus rules under prometheus/ and the
// Grafana dashboard under grafana/. It is a Go module of its own so that
// the server's go.mod does not carry k8s.io/api and kustomize.
package deploy
