package deploy_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/bffgate/bffgate/config"
)

const k8sDir = "kubernetes"

// k8sObjects are the manifests, each decoded strictly into its k8s.io/api
// type: an unknown or misspelled field fails, as `kubectl apply
// --validate=strict` would.
type k8sObjects struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pdbs         map[string]*policyv1.PodDisruptionBudget
}

func loadManifests(t *testing.T) *k8sObjects {
	t.Helper()
	var kust struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Labels     []struct {
			Pairs map[string]string `json:"pairs"`
		} `json:"labels"`
		Resources []string `json:"resources"`
	}
	readStrict(t, filepath.Join(k8sDir, "kustomization.yaml"), &kust)
	if kust.Kind != "Kustomization" || len(kust.Resources) == 0 {
		t.Fatalf("kustomization.yaml: kind %q, %d resources", kust.Kind, len(kust.Resources))
	}
	o := &k8sObjects{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
	}
	// The Secret is created by the operator, from the example's keys.
	files := append(append([]string{}, kust.Resources...), "secret.example.yaml")
	entries, err := os.ReadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".yaml") && name != "kustomization.yaml" && !contains(files, name) {
			t.Errorf("%s is neither a kustomization resource nor secret.example.yaml", name)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(k8sDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			where := fmt.Sprintf("%s[%d]", f, i)
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				o.deployments[meta.Metadata.Name], obj = d, d
			case "apps/v1 StatefulSet":
				s := &appsv1.StatefulSet{}
				o.statefulSets[meta.Metadata.Name], obj = s, s
			case "v1 Service":
				s := &corev1.Service{}
				o.services[meta.Metadata.Name], obj = s, s
			case "v1 ConfigMap":
				c := &corev1.ConfigMap{}
				o.configMaps[meta.Metadata.Name], obj = c, c
			case "v1 Secret":
				s := &corev1.Secret{}
				o.secrets[meta.Metadata.Name], obj = s, s
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				o.pdbs[meta.Metadata.Name], obj = p, p
			default:
				t.Fatalf("%s: unexpected %s %s", where, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s (%s %s): %v", where, meta.Kind, meta.Metadata.Name, err)
			}
		}
	}
	return o
}

func readStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The manifests decode strictly, and what refers to something names what
// exists: ConfigMaps, the Secret and their keys, volumes, ports, probe paths
// on the admin port, selectors; the gateway runs as a hardened, spread,
// disruption-budgeted Deployment whose grace period outlasts its drain; and
// the gateway file of the ConfigMap, with the files the pod would see,
// passes config.Load.
func TestKubernetesManifests(t *testing.T) {
	o := loadManifests(t)
	gw := o.deployments["bffgate"]
	if gw == nil {
		t.Fatal("no Deployment bffgate")
	}
	if gw.Spec.Replicas == nil || *gw.Spec.Replicas < 2 {
		t.Errorf("bffgate replicas %v, want >= 2", gw.Spec.Replicas)
	}
	pod := gw.Spec.Template.Spec
	podLabels := gw.Spec.Template.Labels
	if !matches(gw.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("the Deployment's selector %v does not match its pods %v", gw.Spec.Selector.MatchLabels, podLabels)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container must have readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %v: want cpu and memory requests and a memory limit", c.Resources)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("no %s httpGet probe", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || pr.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe %s on port %s, want %s on admin", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port.String(), pr.path)
		}
	}

	// Volumes: every mount names a volume; every ConfigMap and Secret a
	// volume reads exists, with the keys it picks.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	checkCM := func(name string, items []corev1.KeyToPath) {
		cm := o.configMaps[name]
		if cm == nil {
			t.Errorf("a volume reads ConfigMap %q, which is not defined", name)
			return
		}
		for _, it := range items {
			if _, ok := cm.Data[it.Key]; !ok {
				t.Errorf("ConfigMap %s has no key %q", name, it.Key)
			}
		}
	}
	checkSecret := func(name string, items []corev1.KeyToPath) {
		s := o.secrets[name]
		if s == nil {
			t.Errorf("a volume reads Secret %q, which secret.example.yaml does not define", name)
			return
		}
		for _, it := range items {
			if _, ok := s.StringData[it.Key]; !ok {
				t.Errorf("Secret %s has no key %q", name, it.Key)
			}
		}
	}
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil:
			checkCM(v.ConfigMap.Name, v.ConfigMap.Items)
		case v.Secret != nil:
			checkSecret(v.Secret.SecretName, v.Secret.Items)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					checkCM(src.ConfigMap.Name, src.ConfigMap.Items)
				}
				if src.Secret != nil {
					checkSecret(src.Secret.Name, src.Secret.Items)
				}
			}
		}
	}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("volumeMount %s names no volume", m.Name)
		}
	}

	// Service and PodDisruptionBudget select the gateway's pods, on its ports.
	svc := o.services["bffgate"]
	if svc == nil || !matches(svc.Spec.Selector, podLabels) {
		t.Fatalf("Service bffgate missing or not selecting the gateway's pods")
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("Service port %s targets %q, not a container port name (%v)", p.Name, p.TargetPort.String(), ports)
		}
	}
	pdb := o.pdbs["bffgate"]
	if pdb == nil || pdb.Spec.Selector == nil || !matches(pdb.Spec.Selector.MatchLabels, podLabels) || pdb.Spec.MinAvailable == nil {
		t.Error("PodDisruptionBudget bffgate missing, without minAvailable, or not selecting the gateway's pods")
	}

	// Redis: a StatefulSet behind the Service the gateway file names.
	redis := o.statefulSets["bffgate-redis"]
	rsvc := o.services["bffgate-redis"]
	if redis == nil || rsvc == nil || !matches(rsvc.Spec.Selector, redis.Spec.Template.Labels) {
		t.Error("the demo Redis StatefulSet or its Service is missing or not wired")
	}

	// The pod's files, as the kubelet would mount them, in a temporary
	// root; then the gateway file must load there.
	root := t.TempDir()
	mountOf := map[string]string{}
	for _, m := range c.VolumeMounts {
		mountOf[m.Name] = m.MountPath
	}
	write := func(path, content string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Secret values: what the README's commands make (32 random bytes,
	// base64); the example's are placeholders.
	secretValue := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	rewrite := func(s string) string {
		for _, mp := range mountOf {
			s = strings.ReplaceAll(s, mp, filepath.Join(root, mp))
		}
		return s
	}
	writeCM := func(dir, name string, items []corev1.KeyToPath) {
		for k, v := range o.configMaps[name].Data {
			if len(items) == 0 {
				write(filepath.Join(dir, k), rewrite(v))
			}
		}
		for _, it := range items {
			write(filepath.Join(dir, it.Path), rewrite(o.configMaps[name].Data[it.Key]))
		}
	}
	writeSecret := func(dir string, items []corev1.KeyToPath) {
		for _, it := range items {
			write(filepath.Join(dir, it.Path), secretValue())
		}
	}
	for _, v := range pod.Volumes {
		dir := mountOf[v.Name]
		switch {
		case v.ConfigMap != nil:
			writeCM(dir, v.ConfigMap.Name, v.ConfigMap.Items)
		case v.Secret != nil:
			writeSecret(dir, v.Secret.Items)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					writeCM(dir, src.ConfigMap.Name, src.ConfigMap.Items)
				}
				if src.Secret != nil {
					writeSecret(dir, src.Secret.Items)
				}
			}
		}
	}
	cfgPath := ""
	for i, a := range c.Args {
		if a == "-config" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	if cfgPath == "" {
		t.Fatalf("the container's args %v have no -config", c.Args)
	}
	cfg, err := config.Load(filepath.Join(root, cfgPath))
	if err != nil {
		t.Fatalf("the gateway file of the ConfigMap does not load as the pod would see it: %v", err)
	}
	if len(cfg.Frontends) == 0 {
		t.Error("no frontend loaded from the frontends ConfigMap")
	}
	if got := cfg.Frontends[0].OIDC.ClientSecret; got == "" || strings.Contains(got, "${") {
		t.Errorf("the frontend's client secret was not read from its projected file: %q", got)
	}

	// Ports of the config are the container's; the grace period outlasts
	// preStop plus the drain.
	for name, listen := range map[string]string{"http": cfg.Server.Listen, "admin": cfg.Server.AdminListen} {
		_, port, _ := strings.Cut(listen, ":")
		if strconv.Itoa(int(ports[name])) != port {
			t.Errorf("container port %s is %d, the config listens on %s", name, ports[name], listen)
		}
	}
	grace := time.Duration(0)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	preStop := time.Duration(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if grace <= preStop+cfg.Server.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %s must exceed preStop %s + shutdown_timeout %s", grace, preStop, cfg.Server.ShutdownTimeout)
	}
	if !strings.Contains(cfg.Sessions.Redis.URL, "//"+rsvc.Name+":") {
		t.Errorf("sessions.redis.url %q does not name the Redis Service %s", cfg.Sessions.Redis.URL, rsvc.Name)
	}
}
