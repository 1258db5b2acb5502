package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// The part of Kubernetes' API types that the checks read; decoding into
// typed fields fails on a value of the wrong shape.
type (
	k8sObject struct {
		APIVersion string                `yaml:"apiVersion"`
		Kind       string                `yaml:"kind"`
		Metadata   struct{ Name string } `yaml:"metadata"`
		Data       map[string]string     `yaml:"data"`
		Spec       podSpec               `yaml:"spec"`
	}
	podSpec struct {
		SecurityContext struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
			RunAsUser    *int  `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
		Volumes    []struct {
			Name      string                 `yaml:"name"`
			EmptyDir  map[string]any         `yaml:"emptyDir"`
			ConfigMap *struct{ Name string } `yaml:"configMap"`
		} `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []envVar `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
	}
	envVar struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"` // a number or a port name
		} `yaml:"httpGet"`
	}
)

func decodeManifest(t *testing.T) (cm, pod k8sObject) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(repoFile(t, "kubernetes/pod.yaml"))))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("pod.yaml: %v", err)
		}
		switch o.Kind {
		case "ConfigMap":
			cm = o
		case "Pod":
			pod = o
		}
	}
	if pod.APIVersion != "v1" || cm.APIVersion != "v1" {
		t.Fatalf("pod.yaml: want a v1 Pod and a v1 ConfigMap, got %q and %q", pod.APIVersion, cm.APIVersion)
	}
	return cm, pod
}

func (c container) mount(volume string) (path string, readOnly, ok bool) {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath, m.ReadOnly, true
		}
	}
	return "", false, false
}

// portNumber resolves a probe's port (a number or a container port's name).
func (c container) portNumber(p any) int {
	if n, ok := p.(int); ok {
		return n
	}
	for _, cp := range c.Ports {
		if cp.Name == p {
			return cp.ContainerPort
		}
	}
	return 0
}

// sidecarYAML is the part of the ConfigMap's sidecar.yaml the checks read.
type sidecarYAML struct {
	Etcd struct {
		Endpoints []string `yaml:"endpoints"`
	} `yaml:"etcd"`
	Config []struct {
		Dir string `yaml:"dir"`
	} `yaml:"config"`
	API struct {
		Socket string `yaml:"socket"`
		HTTP   string `yaml:"http"`
	} `yaml:"api"`
}

// The Pod: app and sidecar share the socket's and the mirrored config's
// emptyDirs, the probes ask /v1/health on the port api.http listens on, on
// the Pod's IP, and both run as non-root on a read-only root filesystem.
func TestKubernetesManifest(t *testing.T) {
	cm, pod := decodeManifest(t)
	var app, sc container
	for _, c := range pod.Spec.Containers {
		switch c.Name {
		case "app":
			app = c
		case "sidecar":
			sc = c
		}
	}
	if app.Name == "" || sc.Name == "" {
		t.Fatalf("containers %+v: want app and sidecar", pod.Spec.Containers)
	}
	var conf sidecarYAML
	if err := yaml.Unmarshal([]byte(cm.Data["sidecar.yaml"]), &conf); err != nil {
		t.Fatalf("ConfigMap sidecar.yaml: %v", err)
	}
	if len(conf.Etcd.Endpoints) == 0 || len(conf.Config) == 0 {
		t.Fatalf("sidecar.yaml: want join mode (etcd.endpoints) and a config mapping, got %+v", conf)
	}
	emptyDirs := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		emptyDirs[v.Name] = v.EmptyDir != nil
	}
	shared := map[string]string{}
	for _, m := range sc.VolumeMounts {
		if p, _, ok := app.mount(m.Name); ok && emptyDirs[m.Name] && p == m.MountPath {
			shared[m.MountPath] = m.Name
		}
	}
	if _, ok := shared[filepath.Dir(conf.API.Socket)]; !ok {
		t.Errorf("the socket's directory %s is not an emptyDir both containers mount there (shared: %v)", filepath.Dir(conf.API.Socket), shared)
	}
	if name, ok := shared[conf.Config[0].Dir]; !ok {
		t.Errorf("the mapping's dir %s is not an emptyDir both containers mount there", conf.Config[0].Dir)
	} else if _, ro, _ := app.mount(name); !ro {
		t.Errorf("the app mounts the mirrored config %s read-write; want readOnly", conf.Config[0].Dir)
	}
	if !slices.ContainsFunc(app.Env, func(e envVar) bool { return e.Name == "SIDECAR_SOCKET" && e.Value == conf.API.Socket }) {
		t.Errorf("app env %+v: want SIDECAR_SOCKET=%s", app.Env, conf.API.Socket)
	}
	host, port, err := net.SplitHostPort(conf.API.HTTP)
	if err != nil || (host != "0.0.0.0" && host != "" && host != "::") {
		t.Errorf("api.http %q: the kubelet probes the Pod's IP; want 0.0.0.0:PORT", conf.API.HTTP)
	}
	for name, p := range map[string]*probe{"readinessProbe": sc.ReadinessProbe, "livenessProbe": sc.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/v1/health" || strconv.Itoa(sc.portNumber(p.HTTPGet.Port)) != port {
			t.Errorf("sidecar %s %+v: want httpGet /v1/health on port %s (api.http)", name, p, port)
		}
	}
	checkNonRoot(t, pod.Spec, app, sc)
	t.Run("runs", func(t *testing.T) { runPodSidecar(t, sc, cm.Data["sidecar.yaml"], conf) })
}

// checkNonRoot: the Pod runs as a non-root uid, each container on a
// read-only root filesystem without privilege escalation.
func checkNonRoot(t *testing.T, spec podSpec, cs ...container) {
	t.Helper()
	if s := spec.SecurityContext; s.RunAsNonRoot == nil || !*s.RunAsNonRoot || s.RunAsUser == nil || *s.RunAsUser == 0 {
		t.Errorf("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	for _, c := range cs {
		if s := c.SecurityContext; s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
			t.Errorf("%s securityContext: want readOnlyRootFilesystem and no privilege escalation", c.Name)
		}
	}
}

// runPodSidecar runs the sidecar container's args with the ConfigMap's
// sidecar.yaml against a real etcd: only the etcd Service's address, the
// mounted directories and the port are moved to this machine; the
// environment the manifest sets from the Pod (name, IP) is given as the
// kubelet would. The probe's GET /v1/health answers 200, and SIGTERM ends
// it with status 0.
func runPodSidecar(t *testing.T, sc container, text string, conf sidecarYAML) {
	etcd := etcdtest.StartEmbedded(t)
	sockDir := etcdtest.SocketDir(t)
	text = strings.ReplaceAll(text, filepath.Dir(conf.API.Socket), sockDir)
	text = strings.ReplaceAll(text, conf.Config[0].Dir, t.TempDir())
	confPath := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(confPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(sc.Args)
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) || filepath.Base(args[i+1]) != "sidecar.yaml" {
		t.Fatalf("sidecar args %q: want --config …/sidecar.yaml (the ConfigMap's key)", args)
	}
	args[i+1] = confPath
	_, port, _ := net.SplitHostPort(conf.API.HTTP)
	httpAddr := fmt.Sprintf("0.0.0.0:%d", etcdtest.FreePort(t))
	cmd := exec.Command(sidecarBinary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"),
		"SIDECAR_NAME=orders-pod", "SIDECAR_SERVICE_ADDRESS=127.0.0.1", // from the Pod's fields
		"SIDECAR_ETCD_ENDPOINTS=" + etcd.ClientURL, "SIDECAR_API_HTTP=" + httpAddr, // the Service, the Pod IP
		"SIDECAR_DATA_DIR=" + t.TempDir()}
	log := &etcdtest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	_, probePort, _ := net.SplitHostPort(httpAddr)
	etcdtest.Eventually(t, 30*time.Second, "GET /v1/health answers 200 (the kubelet's probe, on port "+port+" in the Pod)", func() error {
		select {
		case <-exited:
			t.Fatalf("sidecar exited: %v\n%s", waitErr, log)
		default:
		}
		code, err := healthStatus("127.0.0.1:" + probePort)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", waitErr, log)
		}
	case <-time.After(30 * time.Second): // terminationGracePeriodSeconds
		t.Errorf("no exit within 30s of SIGTERM\n%s", log)
	}
}
