package main

// The deployment files (Dockerfile, .dockerignore, docker-compose.yml and
// deploy/kubernetes) cannot be run here: there is no Docker engine and no
// cluster. These tests parse them and check that they agree with the
// bridge's configuration (every MISTBRIDGE_ variable is one variables()
// knows) and with each other (ports, service names, selectors, binaries).
//
// They also hold the deployment to the bridge's two promises about state
// and shutdown: the data directory (the spool of events answered 200 and
// not yet delivered) is on storage that outlives the container or pod (a
// named volume in compose, a StatefulSet volumeClaimTemplate big enough for
// MISTBRIDGE_SPOOL_MAX_BYTES in Kubernetes), and the time the platform
// gives a stopping bridge (stop_grace_period, terminationGracePeriodSeconds)
// covers its preStop pause, MISTBRIDGE_DRAIN_DELAY, MISTBRIDGE_SHUTDOWN_TIMEOUT
// and the closing of the spool and sinks, read from the files' own values
// (the bridge's defaults where they set none).
//
// TestDeployChecksCatchBreakage proves that each check can fail: it breaks
// the real files in memory, one mistake at a time, and expects the named
// problem.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// deployRoot is the repository root, seen from this package's directory.
const deployRoot = "../.."

func TestDeployFiles(t *testing.T) {
	problems := checkDeploy(deployRepo{root: deployRoot}, variables())
	for _, p := range problems {
		t.Error(p)
	}
}

// TestDeployChecksCatchBreakage breaks the real files one way at a time (in
// memory) and expects a problem that mentions want.
func TestDeployChecksCatchBreakage(t *testing.T) {
	for _, m := range []struct {
		name, file, old, new, want string
	}{
		{"compose variable typo", "docker-compose.yml", "MISTBRIDGE_KAFKA_BROKERS: kafka:9092", "MISTBRIDGE_KAFKA_BROKER: kafka:9092", "MISTBRIDGE_KAFKA_BROKER is not a variable"},
		{"compose prefix typo", "docker-compose.yml", "MISTBRIDGE_SINKS:", "MISTBRIGDE_SINKS:", "MISTBRIGDE_SINKS is not a variable"},
		{"compose broker port", "docker-compose.yml", "MISTBRIDGE_KAFKA_BROKERS: kafka:9092", "MISTBRIDGE_KAFKA_BROKERS: kafka:9093", `"kafka" serves no port 9093`},
		{"compose broker host", "docker-compose.yml", "MISTBRIDGE_NATS_URL: nats://nats:4222", "MISTBRIDGE_NATS_URL: nats://natsd:4222", `"natsd" is not a service`},
		{"compose loopback broker", "docker-compose.yml", "MISTBRIDGE_NATS_URL: nats://nats:4222", "MISTBRIDGE_NATS_URL: nats://localhost:4222", "loopback"},
		{"compose sender port", "docker-compose.yml", "http://mistbridge:8080/webhooks/mist", "http://mistbridge:8081/webhooks/mist", `"mistbridge" serves no port 8081`},
		{"compose sender path", "docker-compose.yml", "http://mistbridge:8080/webhooks/mist", "http://mistbridge:8080/webhook/mist", "want /webhooks/mist"},
		{"compose listen port", "docker-compose.yml", `MISTBRIDGE_LISTEN_ADDR: ":8080"`, `MISTBRIDGE_LISTEN_ADDR: ":9090"`, "publishes no container port 9090"},
		{"compose sender secret", "docker-compose.yml", "      - ${MISTBRIDGE_WEBHOOK_SECRET:-change-me}\n", "      - other-secret\n", "-secret"},
		{"compose samples dir", "docker-compose.yml", "      - /samples\n", "      - /sample\n", "-samples /sample"},
		{"compose depends_on", "docker-compose.yml", "      nats:\n        condition: service_healthy", "      natz:\n        condition: service_healthy", `"natz", which is not a service`},
		{"compose unhealthy dependency", "docker-compose.yml", "      test: [\"CMD\", \"wget\"", "      disable: true\n      x: [\"CMD\", \"wget\"", "has no healthcheck"},
		{"compose undeclared volume", "docker-compose.yml", "  nats-data:\n", "", `named volume "nats-data" is not declared`},
		{"compose data dir volume", "docker-compose.yml", "      - bridge-data:/data\n", "", "no named volume mounted at MISTBRIDGE_DATA_DIR"},
		{"compose data dir anonymous volume", "docker-compose.yml", "      - bridge-data:/data\n", "      - /data\n", "MISTBRIDGE_DATA_DIR=/data is an anonymous volume"},
		{"compose data dir tmpfs", "docker-compose.yml", "      - bridge-data:/data\n", "      - type: tmpfs\n        target: /data\n", "MISTBRIDGE_DATA_DIR=/data is a tmpfs"},
		{"compose spool dir", "docker-compose.yml", "      MISTBRIDGE_DATA_DIR: /data\n", "      MISTBRIDGE_DATA_DIR: /data\n      MISTBRIDGE_SPOOL_DIR: /tmp/spool\n", "the spool (MISTBRIDGE_SPOOL_DIR=/tmp/spool) is on no volume"},
		{"compose stop grace period", "docker-compose.yml", "stop_grace_period: 65s", "stop_grace_period: 40s", "stop_grace_period 40s is less than MISTBRIDGE_DRAIN_DELAY 5s + MISTBRIDGE_SHUTDOWN_TIMEOUT 30s"},
		{"compose stop grace default", "docker-compose.yml", "    stop_grace_period: 65s\n", "", "stop_grace_period 10s (the default) is less than"},
		{"compose stop grace vs shutdown", "docker-compose.yml", "      MISTBRIDGE_LOG_FORMAT: json\n", "      MISTBRIDGE_LOG_FORMAT: json\n      MISTBRIDGE_SHUTDOWN_TIMEOUT: 60s\n", "MISTBRIDGE_SHUTDOWN_TIMEOUT 1m0s"},
		{"compose sender binary", "docker-compose.yml", `entrypoint: ["/usr/local/bin/mistsend"]`, `entrypoint: ["/usr/local/bin/mistsender"]`, "/usr/local/bin/mistsender, which the image does not install"},
		{"compose missing service", "docker-compose.yml", "\n  sender:\n", "\n  replayer:\n", `no "sender" service`},
		{"kafka advertised listener", "docker-compose.yml", "PLAINTEXT://kafka:9092,HOST", "PLAINTEXT://localhost:9092,HOST", `"kafka" serves no port 9092`},
		{"kafka listener port", "docker-compose.yml", "KAFKA_LISTENERS: PLAINTEXT://:9092,", "KAFKA_LISTENERS: PLAINTEXT://:19092,", "advertises PLAINTEXT on port 9092 but listens on 19092"},
		{"kafka host port", "docker-compose.yml", `- "9094:9094"`, `- "19094:9094"`, "localhost:9094"},
		{"kafka auto-create", "docker-compose.yml", `KAFKA_AUTO_CREATE_TOPICS_ENABLE: "true"`, `KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"`, "KAFKA_AUTO_CREATE_TOPICS_ENABLE"},
		{"kafka cluster id", "docker-compose.yml", "CLUSTER_ID: bWlzdGJyaWRnZS1kZW1vIQ", "CLUSTER_ID: not-a-uuid", "CLUSTER_ID"},
		{"nats jetstream", "docker-compose.yml", `"nats-server", "--jetstream", `, `"nats-server", `, "JetStream"},
		{"nats store volume", "docker-compose.yml", "      - nats-data:/data\n", "", "--store_dir /data is not on a named volume"},
		{"nats monitor port", "docker-compose.yml", `"--http_port", "8222"`, `"--http_port", "8223"`, "monitoring port 8223"},
		{"dockerfile root user", "Dockerfile", "USER 65532:65532", "USER root", "runs as root"},
		{"dockerfile no user", "Dockerfile", "USER 65532:65532\n", "", "no USER"},
		{"dockerfile no healthcheck", "Dockerfile", "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"},
		{"dockerfile healthcheck binary", "Dockerfile", `CMD ["/usr/local/bin/healthcheck"]`, `CMD ["/usr/local/bin/healthz"]`, "/usr/local/bin/healthz"},
		{"dockerfile binary not copied", "Dockerfile", "/out/mistbridge /out/mistsend /out/healthcheck /usr/local/bin/", "/out/mistbridge /out/healthcheck /usr/local/bin/", "mistsend"},
		{"dockerfile not built", "Dockerfile", "-o /out/mistsend ./cmd/mistsend", "-o /out/mistsend2 ./cmd/mistsend", "/out/mistsend is not built"},
		{"dockerfile cgo", "Dockerfile", "export CGO_ENABLED=0 ", "export ", "CGO_ENABLED=0"},
		{"dockerfile trimpath", "Dockerfile", "go build -trimpath -ldflags='-s -w' -o /out/mistbridge", "go build -ldflags='-s -w' -o /out/mistbridge", "-trimpath"},
		{"dockerfile package", "Dockerfile", "./deploy/healthcheck", "./deploy/healthcheckz", "./deploy/healthcheckz"},
		{"dockerfile expose", "Dockerfile", "EXPOSE 8080 4222", "EXPOSE 8080", "EXPOSE lacks 4222"},
		{"dockerfile env typo", "Dockerfile", "ENV MISTBRIDGE_DATA_DIR=/data", "ENV MISTBRIDGE_DATADIR=/data", "MISTBRIDGE_DATADIR is not a variable"},
		{"dockerfile volume", "Dockerfile", "VOLUME /data", "VOLUME /var/data", "VOLUME"},
		{"dockerfile samples", "Dockerfile", "COPY deploy/samples/ /samples/", "COPY deploy/sample/ /samples/", "deploy/sample"},
		{"dockerignore excludes sources", ".dockerignore", "deploy/kubernetes\n", "deploy\n", "needs what it excludes: deploy/samples"},
		{"dockerignore keeps .git", ".dockerignore", ".git\n", "", ".git is not excluded"},
		{"k8s variable typo", "deploy/kubernetes/statefulset.yaml", "name: MISTBRIDGE_SINKS", "name: MISTBRIDGE_SINK", "MISTBRIDGE_SINK is not a variable"},
		{"k8s secret key", "deploy/kubernetes/statefulset.yaml", "key: webhook-secret", "key: webhook_secret", `no key "webhook_secret"`},
		{"k8s secret name", "deploy/kubernetes/statefulset.yaml", "name: mistbridge\n                  key:", "name: mist-bridge\n                  key:", `Secret "mist-bridge"`},
		{"k8s container port", "deploy/kubernetes/statefulset.yaml", "containerPort: 8080", "containerPort: 8081", "no containerPort 8080"},
		{"k8s listen addr", "deploy/kubernetes/statefulset.yaml", "value: \":8080\"", "value: \":9090\"", "no containerPort 9090"},
		{"k8s service targetPort", "deploy/kubernetes/service.yaml", "targetPort: http", "targetPort: web", `targetPort "web"`},
		{"k8s liveness path", "deploy/kubernetes/statefulset.yaml", "path: /healthz\n              port: http\n            periodSeconds: 10", "path: /health\n              port: http\n            periodSeconds: 10", "livenessProbe GETs /health"},
		{"k8s readiness path", "deploy/kubernetes/statefulset.yaml", "path: /readyz", "path: /healthz", "readinessProbe GETs /healthz"},
		{"k8s probe port", "deploy/kubernetes/statefulset.yaml", "path: /readyz\n              port: http", "path: /readyz\n              port: 9999", "readinessProbe port 9999"},
		{"k8s selector", "deploy/kubernetes/statefulset.yaml", "    matchLabels:\n      app.kubernetes.io/name: mistbridge\n", "    matchLabels:\n      app.kubernetes.io/name: mist-bridge\n", "StatefulSet selector"},
		{"k8s service selector", "deploy/kubernetes/service.yaml", "component: webhook-bridge\n  ports", "component: bridge\n  ports", "Service mistbridge selector"},
		{"k8s pdb selector", "deploy/kubernetes/pdb.yaml", "      app.kubernetes.io/component: webhook-bridge", "      app.kubernetes.io/component: bridge", "PodDisruptionBudget mistbridge selector"},
		{"k8s hpa target", "deploy/kubernetes/hpa.yaml", "    name: mistbridge\n  minReplicas", "    name: mistbridge-web\n  minReplicas", `scales StatefulSet "mistbridge-web"`},
		{"k8s hpa api", "deploy/kubernetes/hpa.yaml", "autoscaling/v2", "autoscaling/v1", "autoscaling/v2"},
		{"k8s hpa min replicas", "deploy/kubernetes/hpa.yaml", "minReplicas: 2", "minReplicas: 1", "minReplicas"},
		{"k8s root", "deploy/kubernetes/statefulset.yaml", "runAsUser: 65532", "runAsUser: 0", "runAsUser"},
		{"k8s writable root", "deploy/kubernetes/statefulset.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"k8s resources", "deploy/kubernetes/statefulset.yaml", "              memory: 512Mi\n", "", "limits.memory"},
		{"k8s data dir", "deploy/kubernetes/statefulset.yaml", "mountPath: /data", "mountPath: /var/data", "no volume mounted at MISTBRIDGE_DATA_DIR"},
		{"k8s kind", "deploy/kubernetes/statefulset.yaml", "kind: StatefulSet\n", "kind: Deployment\n", "want one StatefulSet, found 0"},
		{"k8s leftover deployment", "deploy/kubernetes/statefulset.yaml", "            storage: 2Gi\n", "            storage: 2Gi\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: mistbridge\n", "1 Deployment(s) besides the StatefulSet"},
		{"k8s hpa kind", "deploy/kubernetes/hpa.yaml", "kind: StatefulSet", "kind: Deployment", `scales Deployment "mistbridge"`},
		{"k8s replicas", "deploy/kubernetes/statefulset.yaml", "  revisionHistoryLimit: 5\n", "  replicas: 3\n  revisionHistoryLimit: 5\n", "sets spec.replicas 3"},
		{"k8s headless service", "deploy/kubernetes/statefulset.yaml", "serviceName: mistbridge-headless", "serviceName: mistbridge", "want a headless Service"},
		{"k8s no serviceName", "deploy/kubernetes/statefulset.yaml", "  serviceName: mistbridge-headless\n", "", "no spec.serviceName"},
		{"k8s headless selector", "deploy/kubernetes/headless-service.yaml", "component: webhook-bridge\n  ports", "component: bridge\n  ports", "Service mistbridge-headless selector"},
		{"k8s headless port", "deploy/kubernetes/headless-service.yaml", "targetPort: http", "targetPort: 8081", `Service mistbridge-headless targetPort "8081"`},
		{"k8s pod management", "deploy/kubernetes/statefulset.yaml", "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", "podManagementPolicy"},
		{"k8s update strategy", "deploy/kubernetes/statefulset.yaml", "    type: RollingUpdate\n    rollingUpdate:\n      partition: 0\n", "    type: OnDelete\n", "updateStrategy OnDelete"},
		{"k8s update max unavailable", "deploy/kubernetes/statefulset.yaml", "      partition: 0\n", "      partition: 0\n      maxUnavailable: 3\n", "maxUnavailable 3"},
		{"k8s claim retention", "deploy/kubernetes/statefulset.yaml", "    whenScaled: Retain", "    whenScaled: Delete", "persistentVolumeClaimRetentionPolicy.whenScaled Delete"},
		{"k8s no preStop", "deploy/kubernetes/statefulset.yaml", "            preStop:\n              sleep:\n                seconds: 5\n", "", "no lifecycle.preStop"},
		{"k8s preStop exec sleep", "deploy/kubernetes/statefulset.yaml", "              sleep:\n                seconds: 5\n", "              exec:\n                command: [\"sleep\", \"5\"]\n", "lifecycle.preStop runs sleep, which the image does not install"},
		{"k8s grace period", "deploy/kubernetes/statefulset.yaml", "terminationGracePeriodSeconds: 70", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds 45 is less than"},
		{"k8s grace default", "deploy/kubernetes/statefulset.yaml", "      terminationGracePeriodSeconds: 70\n", "", "terminationGracePeriodSeconds 30 (the default) is less than"},
		{"k8s grace vs preStop", "deploy/kubernetes/statefulset.yaml", "                seconds: 5\n", "                seconds: 20\n", "preStop 20s"},
		{"k8s grace vs drain delay", "deploy/kubernetes/statefulset.yaml", "name: MISTBRIDGE_DRAIN_DELAY\n              value: 5s", "name: MISTBRIDGE_DRAIN_DELAY\n              value: 20s", "MISTBRIDGE_DRAIN_DELAY 20s"},
		{"k8s bad duration", "deploy/kubernetes/statefulset.yaml", "name: MISTBRIDGE_SHUTDOWN_TIMEOUT\n              value: 30s", "name: MISTBRIDGE_SHUTDOWN_TIMEOUT\n              value: thirty", `MISTBRIDGE_SHUTDOWN_TIMEOUT="thirty" is not a duration`},
		{"k8s data dir emptyDir", "deploy/kubernetes/statefulset.yaml", "          volumeMounts:\n            - name: data\n              mountPath: /data\n", "          volumeMounts:\n            - name: scratch\n              mountPath: /data\n      volumes:\n        - name: scratch\n          emptyDir: {}\n", `is on volume "scratch", a pod emptyDir`},
		{"k8s claim renamed", "deploy/kubernetes/statefulset.yaml", "    - metadata:\n        name: data\n", "    - metadata:\n        name: spool\n", "volumeMount data names no volume"},
		{"k8s spool dir", "deploy/kubernetes/statefulset.yaml", "            - name: MISTBRIDGE_ACK_MODE\n", "            - name: MISTBRIDGE_SPOOL_DIR\n              value: /tmp/spool\n            - name: MISTBRIDGE_ACK_MODE\n", "the spool (MISTBRIDGE_SPOOL_DIR=/tmp/spool) is on no mounted volume"},
		{"k8s claim size", "deploy/kubernetes/statefulset.yaml", "storage: 2Gi", "storage: 1Gi", `requests storage "1Gi"`},
		{"k8s claim size vs spool", "deploy/kubernetes/statefulset.yaml", "value: \"1073741824\"", "value: \"4294967296\"", "MISTBRIDGE_SPOOL_MAX_BYTES=4294967296"},
		{"kustomization missing file", "deploy/kubernetes/kustomization.yaml", "  - pdb.yaml\n", "  - pdb.yaml\n  - ingress.yaml\n", "ingress.yaml"},
		{"kustomization unlisted manifest", "deploy/kubernetes/kustomization.yaml", "  - hpa.yaml\n", "", "hpa.yaml is not listed"},
	} {
		t.Run(m.name, func(t *testing.T) {
			r := deployRepo{root: deployRoot, override: map[string]string{}}
			text, err := r.read(m.file)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(text, m.old) != 1 {
				t.Fatalf("%s: want exactly one %q to break (the file changed: update this case)", m.file, m.old)
			}
			r.override[m.file] = strings.Replace(text, m.old, m.new, 1)
			problems := checkDeploy(r, variables())
			for _, p := range problems {
				if strings.Contains(p, m.want) {
					return
				}
			}
			t.Errorf("breaking %s (%q -> %q): no problem mentions %q; got:\n  %s", m.file, m.old, m.new, m.want, strings.Join(problems, "\n  "))
		})
	}
}

// deployRepo reads the repository's files; override replaces some of them
// in memory (by slash path relative to root).
type deployRepo struct {
	root     string
	override map[string]string
}

func (r deployRepo) read(rel string) (string, error) {
	if s, ok := r.override[rel]; ok {
		return s, nil
	}
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(rel)))
	return string(b), err
}

func (r deployRepo) exists(rel string) bool {
	if _, ok := r.override[rel]; ok {
		return true
	}
	_, err := os.Stat(filepath.Join(r.root, filepath.FromSlash(rel)))
	return err == nil
}

// checkDeploy runs every check and returns the problems found.
func checkDeploy(r deployRepo, vars []variable) []string {
	c := &deployCheck{repo: r, vars: map[string]variable{}}
	for _, v := range vars {
		c.vars[v.Key] = v
	}
	c.checkDockerfile()
	c.checkDockerignore()
	c.checkCompose()
	c.checkKubernetes()
	return c.problems
}

type deployCheck struct {
	repo     deployRepo
	vars     map[string]variable
	problems []string
	image    dockerImage
}

func (c *deployCheck) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// checkVariable reports a name that looks like the bridge's but is not one
// of its variables: a typo the bridge would only warn about at start-up.
func (c *deployCheck) checkVariable(where, name string) {
	if !strings.HasPrefix(strings.ToUpper(name), "MIST") {
		return
	}
	if _, ok := c.vars[name]; !ok {
		c.errorf("%s: %s is not a variable mistbridge reads (see mistbridge -h)", where, name)
	}
}

// value is the variable's value from env, else its default.
func (c *deployCheck) value(env map[string]string, key string) string {
	if v, ok := env[key]; ok {
		return v
	}
	v, ok := c.vars[key]
	if !ok {
		c.errorf("the configuration has no %s (variables() lost it?)", key)
	}
	return v.Default
}

// portOf is the port of a host:port address, or "" with a problem.
func (c *deployCheck) portOf(where, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		c.errorf("%s: %q is not host:port", where, addr)
		return ""
	}
	return port
}

// ---- Dockerfile ----

// dockerImage is what the Dockerfile's final stage puts in the image.
type dockerImage struct {
	parsed      bool
	files       map[string]string // absolute path in the image -> package it is built from ("./cmd/x") or context path
	dirs        map[string]string // directory in the image -> context directory copied there
	env         map[string]string
	entrypoint  []string
	healthcheck bool
	shell       bool // the base has a shell and coreutils (not distroless, not scratch)
	user        string
	uid         int // -1 when not numeric
	expose      []string
	volumes     []string
}

type dockerInstr struct {
	cmd  string // upper case
	args string
	line int
}

type dockerStage struct {
	name   string
	base   string
	instrs []dockerInstr
}

func parseDockerfile(text string) []dockerStage {
	var stages []dockerStage
	var buf strings.Builder
	start := 0
	flush := func() {
		s := strings.TrimSpace(buf.String())
		buf.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := dockerStage{}
			for i := 0; i < len(f); i++ {
				if strings.HasPrefix(f[i], "--") {
					continue
				}
				if st.base == "" {
					st.base = f[i]
				} else if strings.EqualFold(f[i], "AS") && i+1 < len(f) {
					st.name = f[i+1]
					break
				}
			}
			stages = append(stages, st)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (buf.Len() == 0 && trimmed == "") {
			continue // comments and blank lines, also inside a continued instruction
		}
		if buf.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			buf.WriteString(cont + " ")
			continue
		}
		buf.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

// dockerExecForm reads ["a", "b"] or a shell-form command (split on spaces).
func dockerExecForm(s string) []string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var out []string
		if err := yaml.Unmarshal([]byte(s), &out); err == nil {
			return out
		}
	}
	return strings.Fields(s)
}

// dockerCopyArgs splits COPY's arguments into flags, sources and destination.
func dockerCopyArgs(args string) (flags map[string]string, srcs []string, dest string) {
	flags = map[string]string{}
	f := dockerExecForm(args)
	var rest []string
	for _, a := range f {
		if strings.HasPrefix(a, "--") && len(rest) == 0 {
			k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			flags[k] = v
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) < 2 {
		return flags, nil, ""
	}
	return flags, rest[:len(rest)-1], rest[len(rest)-1]
}

// dockerEnvArgs reads ENV k=v k2=v2 or ENV k v.
func dockerEnvArgs(args string) map[string]string {
	out := map[string]string{}
	f := strings.Fields(args)
	if len(f) >= 2 && !strings.Contains(f[0], "=") {
		out[f[0]] = strings.Join(f[1:], " ")
		return out
	}
	for _, kv := range f {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = strings.Trim(v, `"'`)
	}
	return out
}

var dockerGoBuildRE = regexp.MustCompile(`go build([^&;|]*)`)

// dockerGoBuild is one `go build` of a builder stage.
type dockerGoBuild struct {
	pkg, out, args string
}

func (c *deployCheck) checkDockerfile() {
	text, err := c.repo.read("Dockerfile")
	if err != nil {
		c.errorf("Dockerfile: %v", err)
		return
	}
	stages := parseDockerfile(text)
	if len(stages) < 2 {
		c.errorf("Dockerfile: want a multi-stage build (a Go builder and a small final stage), got %d stage(s)", len(stages))
		return
	}
	// What each builder stage builds.
	builds := map[string]map[string]dockerGoBuild{} // stage name -> output path -> build
	runText := map[string]string{}
	for _, st := range stages[:len(stages)-1] {
		builds[st.name] = map[string]dockerGoBuild{}
		env := map[string]string{}
		for _, in := range st.instrs {
			switch in.cmd {
			case "ENV":
				for k, v := range dockerEnvArgs(in.args) {
					env[k] = v
				}
			case "RUN":
				runText[st.name] += in.args + "\n"
				for _, m := range dockerGoBuildRE.FindAllStringSubmatch(in.args, -1) {
					f := strings.Fields(m[1])
					b := dockerGoBuild{args: m[1]}
					for i, a := range f {
						if a == "-o" && i+1 < len(f) {
							b.out = f[i+1]
						}
						if strings.HasPrefix(a, "./") {
							b.pkg = "./" + path.Clean(a)
						}
					}
					where := fmt.Sprintf("Dockerfile:%d", in.line)
					if b.out == "" || b.pkg == "" {
						c.errorf("%s: go build%s: want -o <binary> ./<package>", where, m[1])
						continue
					}
					if !strings.Contains(in.args, "CGO_ENABLED=0") && env["CGO_ENABLED"] != "0" {
						c.errorf("%s: go build of %s without CGO_ENABLED=0: the final image has no libc", where, b.pkg)
					}
					if !strings.Contains(b.args, "-trimpath") {
						c.errorf("%s: go build of %s without -trimpath", where, b.pkg)
					}
					if !strings.Contains(b.args, "-s -w") {
						c.errorf("%s: go build of %s without -ldflags='-s -w'", where, b.pkg)
					}
					if !c.isMainPackage(b.pkg) {
						c.errorf("%s: go build %s: no package main in %s", where, b.pkg, b.pkg)
					}
					builds[st.name][b.out] = b
				}
			}
		}
		if !strings.Contains(runText[st.name], "--mount=type=cache") && len(builds[st.name]) > 0 {
			c.errorf("Dockerfile: stage %q builds without a cache mount for the module cache", st.name)
		}
	}
	built := map[string]bool{}
	for _, bs := range builds {
		for _, b := range bs {
			built[path.Clean(b.pkg)] = true
		}
	}
	for _, pkg := range []string{"./cmd/mistbridge", "./cmd/mistsend", "./deploy/healthcheck"} {
		if !built[path.Clean(pkg)] {
			c.errorf("Dockerfile: no stage builds %s", pkg)
		}
	}

	// The final stage.
	final := stages[len(stages)-1]
	img := dockerImage{parsed: true, files: map[string]string{}, dirs: map[string]string{}, env: map[string]string{}, uid: -1}
	if !strings.Contains(final.base, "distroless") && final.base != "scratch" && !strings.Contains(final.base, "alpine") {
		c.errorf("Dockerfile: the final stage is FROM %s: want a small base (distroless static, scratch)", final.base)
	}
	img.shell = !strings.Contains(final.base, "distroless") && final.base != "scratch"
	for _, in := range final.instrs {
		where := fmt.Sprintf("Dockerfile:%d", in.line)
		switch in.cmd {
		case "COPY", "ADD":
			flags, srcs, dest := dockerCopyArgs(in.args)
			if dest == "" {
				c.errorf("%s: %s %s: want sources and a destination", where, in.cmd, in.args)
				continue
			}
			for _, src := range srcs {
				target := dest
				if strings.HasSuffix(dest, "/") || len(srcs) > 1 {
					target = path.Join(dest, path.Base(src))
				}
				target = path.Clean(target)
				if from, ok := flags["from"]; ok {
					bs, ok := builds[from]
					if !ok {
						c.errorf("%s: COPY --from=%s: no such stage", where, from)
						continue
					}
					if b, ok := bs[path.Clean(src)]; ok {
						img.files[target] = b.pkg
					} else if !slices.Contains(strings.Fields(runText[from]), src) { // e.g. made by mkdir
						c.errorf("%s: COPY --from=%s %s: %s is not built in that stage", where, from, src, src)
					}
					continue
				}
				rel := strings.TrimSuffix(path.Clean(src), "/")
				if !c.repo.exists(rel) {
					c.errorf("%s: COPY %s: the build context has no %s", where, src, rel)
					continue
				}
				img.dirs[path.Clean(dest)] = rel
			}
		case "ENV":
			for k, v := range dockerEnvArgs(in.args) {
				img.env[k] = v
				c.checkVariable(where+" ENV", k)
			}
		case "USER":
			img.user = strings.TrimSpace(in.args)
		case "HEALTHCHECK":
			if strings.EqualFold(strings.TrimSpace(in.args), "NONE") {
				img.healthcheck = false
				continue
			}
			img.healthcheck = true
			_, cmd, ok := strings.Cut(in.args, "CMD ")
			if !ok {
				c.errorf("%s: HEALTHCHECK without CMD", where)
				continue
			}
			exe := dockerExecForm(cmd)
			if len(exe) > 0 && exe[0] != "CMD-SHELL" {
				c.needFile(&img, where+" HEALTHCHECK", exe[0], "./deploy/healthcheck")
			}
		case "ENTRYPOINT":
			img.entrypoint = dockerExecForm(in.args)
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				img.expose = append(img.expose, strings.Split(p, "/")[0])
			}
		case "VOLUME":
			img.volumes = append(img.volumes, dockerExecForm(in.args)...)
		case "RUN":
			if strings.Contains(final.base, "distroless") || final.base == "scratch" {
				c.errorf("%s: RUN in a final stage without a shell", where)
			}
		}
	}
	user, _, _ := strings.Cut(img.user, ":")
	switch {
	case user == "":
		c.errorf("Dockerfile: the final stage sets no USER: it would run as root")
	case user == "root" || user == "0":
		c.errorf("Dockerfile: USER %s: the final stage runs as root", img.user)
	default:
		if n, err := strconv.Atoi(user); err == nil {
			img.uid = n
		}
	}
	if !img.healthcheck {
		c.errorf("Dockerfile: the final stage has no HEALTHCHECK")
	}
	if len(img.entrypoint) == 0 {
		c.errorf("Dockerfile: the final stage has no ENTRYPOINT")
	} else {
		c.needFile(&img, "Dockerfile ENTRYPOINT", img.entrypoint[0], "./cmd/mistbridge")
	}
	listen := c.portOf("Dockerfile MISTBRIDGE_LISTEN_ADDR", c.value(img.env, "MISTBRIDGE_LISTEN_ADDR"))
	nats := c.portOf("Dockerfile MISTBRIDGE_NATS_EMBEDDED_ADDR", c.value(img.env, "MISTBRIDGE_NATS_EMBEDDED_ADDR"))
	for _, p := range []string{listen, nats} {
		if p != "" && !slices.Contains(img.expose, p) {
			c.errorf("Dockerfile: EXPOSE lacks %s (EXPOSE %s)", p, strings.Join(img.expose, " "))
		}
	}
	dataDir := c.value(img.env, "MISTBRIDGE_DATA_DIR")
	if !path.IsAbs(dataDir) || !slices.Contains(img.volumes, dataDir) {
		c.errorf("Dockerfile: MISTBRIDGE_DATA_DIR=%s: want an absolute directory that is a VOLUME (VOLUME %s)", dataDir, strings.Join(img.volumes, " "))
	}
	c.image = img
}

// needFile reports unless the image installs exe built from pkg (when pkg
// is not empty).
func (c *deployCheck) needFile(img *dockerImage, where, exe, pkg string) {
	got, ok := img.files[path.Clean(exe)]
	if !path.IsAbs(exe) {
		for f, p := range img.files {
			if path.Base(f) == exe && (path.Dir(f) == "/usr/local/bin" || path.Dir(f) == "/usr/bin" || path.Dir(f) == "/bin") {
				got, ok = p, true
			}
		}
	}
	switch {
	case !ok:
		c.errorf("%s runs %s, which the image does not install (it has %s)", where, exe, strings.Join(deploySortedKeys(img.files), ", "))
	case pkg != "" && path.Clean(got) != path.Clean(pkg):
		c.errorf("%s runs %s, built from %s: want %s", where, exe, got, pkg)
	}
}

func (c *deployCheck) isMainPackage(pkg string) bool {
	dir := filepath.Join(c.repo.root, filepath.FromSlash(pkg))
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err == nil && regexp.MustCompile(`(?m)^package main\b`).Match(b) {
			return true
		}
	}
	return false
}

// ---- .dockerignore ----

// checkDockerignore checks that every Go source, go.mod, go.sum and every
// file the image copies from the context stays in the build context.
func (c *deployCheck) checkDockerignore() {
	text, err := c.repo.read(".dockerignore")
	if err != nil {
		c.errorf(".dockerignore: %v (without it the whole repository, .git included, is sent to the builder)", err)
		return
	}
	var patterns []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		patterns = append(patterns, line)
	}
	ignored := func(rel string) bool {
		out := false
		for _, p := range patterns {
			neg := strings.HasPrefix(p, "!")
			p = path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
			// A pattern excludes a path or any directory above it.
			for q := rel; q != "." && q != "/"; q = path.Dir(q) {
				if ok, _ := path.Match(p, q); ok {
					out = !neg
					break
				}
			}
		}
		return out
	}
	if !ignored(".git") {
		c.errorf(".dockerignore: .git is not excluded")
	}
	need := []string{"go.mod", "go.sum"}
	for _, dir := range c.image.dirs {
		need = append(need, dir)
	}
	root := c.repo.root
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && (rel == ".git" || rel == "data" || strings.HasPrefix(d.Name(), ".") && rel != ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			need = append(need, rel)
		}
		return nil
	})
	for _, dir := range c.image.dirs {
		files, _ := os.ReadDir(filepath.Join(root, filepath.FromSlash(dir)))
		for _, f := range files {
			need = append(need, dir+"/"+f.Name())
		}
	}
	var excluded []string
	for _, rel := range need {
		if ignored(rel) {
			excluded = append(excluded, rel)
		}
	}
	if len(excluded) > 5 {
		excluded = append(excluded[:5], fmt.Sprintf("and %d more", len(excluded)-5))
	}
	if len(excluded) > 0 {
		c.errorf(".dockerignore: the image build needs what it excludes: %s", strings.Join(excluded, ", "))
	}
}

// ---- docker-compose.yml ----

// composeStrList is a YAML string or a list of strings (command, entrypoint, test).
type composeStrList []string

func (s *composeStrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	err := n.Decode(&l)
	*s = l
	return err
}

// composeEnv is a compose environment: a map, or a list of KEY=VALUE.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	m := composeEnv{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = n.Content[i+1].Value
		}
	case yaml.SequenceNode:
		for _, it := range n.Content {
			k, v, _ := strings.Cut(it.Value, "=")
			m[k] = v
		}
	default:
		return errors.New("environment: want a map or a list")
	}
	*e = m
	return nil
}

// composeDependsOn is a list of services, or a map of service to condition.
type composeDependsOn map[string]string

func (d *composeDependsOn) UnmarshalYAML(n *yaml.Node) error {
	m := composeDependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, it := range n.Content {
			m[it.Value] = "service_started"
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			var v struct{ Condition string }
			if err := n.Content[i+1].Decode(&v); err != nil {
				return err
			}
			m[n.Content[i].Value] = v.Condition
		}
	}
	*d = m
	return nil
}

// composePort is a port mapping, short ("9094:9094") or long syntax.
type composePort struct{ published, target string }

func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		p.target = strings.Split(parts[len(parts)-1], "/")[0]
		if len(parts) >= 2 {
			p.published = parts[len(parts)-2]
		}
		return nil
	}
	var v struct {
		Target    any
		Published any
	}
	if err := n.Decode(&v); err != nil {
		return err
	}
	p.target, p.published = fmt.Sprint(v.Target), fmt.Sprint(v.Published)
	return nil
}

// composeVolume is a mount, short ("name:/path:ro") or long syntax; typ
// is the long syntax's type (volume, bind, tmpfs), "" for the short one.
type composeVolume struct{ source, target, typ string }

func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) == 1 {
			v.target = parts[0]
		} else {
			v.source, v.target = parts[0], parts[1]
		}
		return nil
	}
	var l struct{ Type, Source, Target string }
	if err := n.Decode(&l); err != nil {
		return err
	}
	v.source, v.target, v.typ = l.Source, l.Target, l.Type
	return nil
}

type composeService struct {
	Image       string
	Build       any
	Hostname    string
	Entrypoint  composeStrList
	Command     composeStrList
	Environment composeEnv
	Ports       []composePort
	Expose      []any
	Volumes     []composeVolume
	Tmpfs       composeStrList
	DependsOn   composeDependsOn `yaml:"depends_on"`
	Healthcheck *struct {
		Test    composeStrList
		Disable bool
	}
	// StopGracePeriod is how long `docker compose stop` waits after
	// SIGTERM before SIGKILL (10s when unset).
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type composeFile struct {
	Services map[string]*composeService
	Volumes  map[string]any
}

var composeInterpRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// composeInterpolate applies compose's ${VAR:-default} with an empty environment.
func composeInterpolate(s string) string {
	return composeInterpRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeInterpRE.FindStringSubmatch(m)
		if strings.HasSuffix(sub[2], "-") {
			return sub[3]
		}
		return ""
	})
}

// composeCtx is what the compose checks share.
type composeCtx struct {
	file     composeFile
	builtImg map[string]bool // image names built from the Dockerfile
}

// fromDockerfile tells whether a service runs the image of our Dockerfile.
func (cc *composeCtx) fromDockerfile(s *composeService) bool {
	return s.Build != nil || (s.Image != "" && cc.builtImg[s.Image])
}

// executable is the program a service runs, "" when unknown.
func (c *deployCheck) executable(cc *composeCtx, s *composeService) string {
	if len(s.Entrypoint) > 0 {
		return s.Entrypoint[0]
	}
	if cc.fromDockerfile(s) && len(c.image.entrypoint) > 0 {
		return c.image.entrypoint[0]
	}
	return ""
}

// env is a service's environment with the image's ENV under it.
func (c *deployCheck) env(cc *composeCtx, s *composeService) map[string]string {
	out := map[string]string{}
	if cc.fromDockerfile(s) {
		for k, v := range c.image.env {
			out[k] = v
		}
	}
	for k, v := range s.Environment {
		out[k] = composeInterpolate(v)
	}
	return out
}

func (c *deployCheck) checkCompose() {
	text, err := c.repo.read("docker-compose.yml")
	if err != nil {
		c.errorf("docker-compose.yml: %v", err)
		return
	}
	cc := &composeCtx{builtImg: map[string]bool{}}
	if err := yaml.Unmarshal([]byte(text), &cc.file); err != nil {
		c.errorf("docker-compose.yml: %v", err)
		return
	}
	services := cc.file.Services
	for _, name := range []string{"kafka", "nats", "mistbridge", "sender"} {
		if services[name] == nil {
			c.errorf("docker-compose.yml: no %q service (want kafka, nats, mistbridge and sender)", name)
		}
	}
	for _, s := range services {
		if s.Build != nil && s.Image != "" {
			cc.builtImg[s.Image] = true
		}
	}
	names := deploySortedKeys(services)

	// What each service serves on the compose network, by port.
	serves := map[string][]string{}
	for _, name := range names {
		s := services[name]
		where := "docker-compose.yml " + name
		for k := range s.Environment {
			c.checkVariable(where+" environment", k)
		}
		for _, e := range s.Expose {
			serves[name] = append(serves[name], strings.Split(fmt.Sprint(e), "/")[0])
		}
		for _, p := range s.Ports {
			serves[name] = append(serves[name], p.target)
		}
		switch {
		case strings.HasPrefix(s.Image, "apache/kafka"):
			serves[name] = append(serves[name], c.checkKafka(where, name, s)...)
		case strings.HasPrefix(s.Image, "nats"):
			serves[name] = append(serves[name], c.checkNATS(where, s)...)
		}
		// Named volumes are declared; binaries of our image are installed.
		for _, v := range s.Volumes {
			if v.source != "" && !strings.ContainsAny(v.source[:1], "./~$") {
				if _, ok := cc.file.Volumes[v.source]; !ok {
					c.errorf("%s: named volume %q is not declared under the top-level volumes:", where, v.source)
				}
			}
		}
		if cc.fromDockerfile(s) {
			if exe := c.executable(cc, s); exe == "" {
				c.errorf("%s: runs nothing (no entrypoint, and the image has none)", where)
			} else if c.image.parsed {
				c.needFile(&c.image, where, exe, "")
			}
		}
	}
	// Bridges: the services running mistbridge.
	bridges := map[string]map[string]string{}
	for _, name := range names {
		s := services[name]
		if !cc.fromDockerfile(s) || path.Base(c.executable(cc, s)) != "mistbridge" {
			continue
		}
		where := "docker-compose.yml " + name
		env := c.env(cc, s)
		bridges[name] = env
		listen := c.portOf(where+" MISTBRIDGE_LISTEN_ADDR", c.value(env, "MISTBRIDGE_LISTEN_ADDR"))
		serves[name] = append(serves[name], listen)
		published := false
		for _, p := range s.Ports {
			published = published || p.target == listen
		}
		if !published {
			c.errorf("%s: listens on %s (MISTBRIDGE_LISTEN_ADDR) but publishes no container port %s", where, listen, listen)
		}
		// The data directory, and the spool in it, on a volume that outlives
		// the container: a named volume (or a bind mount), not an anonymous
		// volume or a tmpfs.
		dataDir := c.value(env, "MISTBRIDGE_DATA_DIR")
		mounts := map[string]composeVolume{}
		for _, v := range s.Volumes {
			mounts[path.Clean(v.target)] = v
		}
		for _, t := range s.Tmpfs {
			target, _, _ := strings.Cut(t, ":")
			mounts[path.Clean(target)] = composeVolume{target: target, typ: "tmpfs"}
		}
		durable := func(v composeVolume) string {
			switch {
			case v.typ == "tmpfs":
				return "a tmpfs"
			case v.source == "":
				return "an anonymous volume"
			}
			return ""
		}
		if v, ok := mounts[path.Clean(dataDir)]; !ok {
			c.errorf("%s: no named volume mounted at MISTBRIDGE_DATA_DIR=%s: the spool must outlive the container", where, dataDir)
		} else if what := durable(v); what != "" {
			c.errorf("%s: MISTBRIDGE_DATA_DIR=%s is %s: the spool must outlive the container: mount a named volume there", where, dataDir, what)
		}
		spoolDir, spoolWhat := deploySpoolDir(env, dataDir)
		if mp, ok := deployMountOf(mounts, spoolDir); !ok {
			c.errorf("%s: the spool (%s) is on no volume: it would be lost with the container", where, spoolWhat)
		} else if what := durable(mounts[mp]); what != "" && mp != path.Clean(dataDir) {
			c.errorf("%s: the spool (%s) is on %s at %s: want a named volume", where, spoolWhat, what, mp)
		}
		// docker compose stop waits stop_grace_period after SIGTERM, then kills.
		grace, note := 10*time.Second, " (the default)"
		if s.StopGracePeriod != "" {
			d, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil {
				c.errorf("%s: stop_grace_period %q is not a duration", where, s.StopGracePeriod)
			}
			grace, note = d, ""
		}
		drain := c.duration(where, env, "MISTBRIDGE_DRAIN_DELAY")
		shutdown := c.duration(where, env, "MISTBRIDGE_SHUTDOWN_TIMEOUT")
		if need := drain + shutdown + deployCloseBudget; grace < need {
			c.errorf("%s: stop_grace_period %v%s is less than MISTBRIDGE_DRAIN_DELAY %v + MISTBRIDGE_SHUTDOWN_TIMEOUT %v + closing the spool and sinks %v = %v: docker would kill the bridge before it answered every request in flight",
				where, grace, note, drain, shutdown, deployCloseBudget, need)
		}
	}
	if services["mistbridge"] != nil && bridges["mistbridge"] == nil {
		c.errorf("docker-compose.yml mistbridge: does not run the mistbridge binary of the Dockerfile")
	}

	// Every address a service is told to use names a service serving that port.
	checkAddr := func(where, hostport, defPort string) {
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			host, port = hostport, defPort
		}
		switch {
		case host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1":
			c.errorf("%s: %s is the container's own loopback, not another service", where, hostport)
		case services[host] == nil:
			c.errorf("%s: %s: %q is not a service of docker-compose.yml", where, hostport, host)
		case !slices.Contains(serves[host], port):
			ports := slices.Compact(slices.Sorted(slices.Values(serves[host])))
			c.errorf("%s: %s: service %q serves no port %s (it serves %s)", where, hostport, host, port, strings.Join(ports, ", "))
		}
	}
	for _, name := range deploySortedKeys(bridges) {
		env := bridges[name]
		where := "docker-compose.yml " + name
		for _, u := range deploySplitList(env["MISTBRIDGE_NATS_URL"]) {
			pu, err := url.Parse(u)
			if err != nil || pu.Host == "" {
				c.errorf("%s: MISTBRIDGE_NATS_URL has %q: want nats://host:port", where, u)
				continue
			}
			checkAddr(where+" MISTBRIDGE_NATS_URL", pu.Host, "4222")
		}
		for _, b := range deploySplitList(env["MISTBRIDGE_KAFKA_BROKERS"]) {
			checkAddr(where+" MISTBRIDGE_KAFKA_BROKERS", b, "9092")
		}
	}
	for _, name := range names {
		s := services[name]
		for _, a := range s.Command {
			if u, err := url.Parse(composeInterpolate(a)); err == nil && u.Scheme != "" && u.Host != "" {
				def := map[string]string{"http": "80", "https": "443", "nats": "4222"}[u.Scheme]
				checkAddr("docker-compose.yml "+name+" command", u.Host, def)
			}
		}
	}

	// The sender posts where a bridge listens, with its secret, from samples in the image.
	for _, name := range names {
		s := services[name]
		if !cc.fromDockerfile(s) || path.Base(c.executable(cc, s)) != "mistsend" {
			continue
		}
		where := "docker-compose.yml " + name
		flags := map[string]string{}
		for i := 0; i+1 < len(s.Command); i++ {
			if strings.HasPrefix(s.Command[i], "-") {
				flags[strings.TrimLeft(s.Command[i], "-")] = composeInterpolate(s.Command[i+1])
			}
		}
		u, err := url.Parse(flags["url"])
		if err != nil || u.Host == "" {
			c.errorf("%s: want -url http://<bridge>:<port>/webhooks/<receiver>, got %q", where, flags["url"])
			continue
		}
		env, ok := bridges[u.Hostname()]
		if !ok {
			c.errorf("%s: -url %s: %q is not a service running mistbridge", where, u, u.Hostname())
			continue
		}
		if want := "/webhooks/" + c.value(env, "MISTBRIDGE_RECEIVER"); u.Path != want {
			c.errorf("%s: -url %s: the bridge's receiver is at %s: want %s", where, u, want, want)
		}
		secret, ok := flags["secret"]
		if !ok {
			secret = c.env(cc, s)["MISTBRIDGE_WEBHOOK_SECRET"]
		}
		if bridgeSecrets := deploySplitList(env["MISTBRIDGE_WEBHOOK_SECRET"]); !slices.Contains(bridgeSecrets, secret) {
			c.errorf("%s: -secret %q is not one of the bridge's MISTBRIDGE_WEBHOOK_SECRET: every request would be refused", where, secret)
		}
		samples := flags["samples"]
		if dir, ok := c.image.dirs[path.Clean(samples)]; !ok {
			c.errorf("%s: -samples %s: the image copies no samples there (it has %s)", where, samples, strings.Join(deploySortedKeys(c.image.dirs), ", "))
		} else if files, _ := filepath.Glob(filepath.Join(c.repo.root, filepath.FromSlash(dir), "*.json")); len(files) == 0 {
			c.errorf("%s: -samples %s: %s has no *.json sample", where, samples, dir)
		} else if !c.repo.exists(dir + "/SOURCES.md") {
			c.errorf("%s: %s/SOURCES.md is missing: the samples' provenance must travel with them", where, dir)
		}
	}

	// depends_on names services; a healthy condition needs a healthcheck.
	for _, name := range names {
		for _, dep := range deploySortedKeys(services[name].DependsOn) {
			cond := services[name].DependsOn[dep]
			d := services[dep]
			if d == nil {
				c.errorf("docker-compose.yml %s: depends_on %q, which is not a service", name, dep)
				continue
			}
			if cond != "service_healthy" {
				continue
			}
			has := d.Healthcheck != nil && !d.Healthcheck.Disable && len(d.Healthcheck.Test) > 0
			if d.Healthcheck == nil && cc.fromDockerfile(d) {
				has = c.image.healthcheck
			}
			if !has {
				c.errorf("docker-compose.yml %s: waits for %q to be healthy, but %q has no healthcheck", name, dep, dep)
			}
		}
	}
	for _, dep := range []string{"kafka", "nats"} {
		if b := services["mistbridge"]; b != nil && services[dep] != nil && b.DependsOn[dep] != "service_healthy" {
			c.errorf("docker-compose.yml mistbridge: want depends_on %s with condition service_healthy", dep)
		}
	}
}

// checkKafka checks an apache/kafka service and returns the ports it
// serves on the compose network (its advertised listeners there).
func (c *deployCheck) checkKafka(where, name string, s *composeService) []string {
	env := s.Environment
	listeners := map[string]string{} // name -> port
	for _, l := range deploySplitList(env["KAFKA_LISTENERS"]) {
		lname, addr, ok := strings.Cut(l, "://")
		if !ok {
			c.errorf("%s: KAFKA_LISTENERS has %q: want NAME://host:port", where, l)
			continue
		}
		listeners[lname] = c.portOf(where+" KAFKA_LISTENERS", addr)
	}
	protocols := map[string]bool{}
	for _, p := range deploySplitList(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]) {
		k, _, _ := strings.Cut(p, ":")
		protocols[k] = true
	}
	for _, l := range deploySortedKeys(listeners) {
		if !protocols[l] {
			c.errorf("%s: listener %s has no entry in KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", where, l)
		}
	}
	published := map[string]string{} // container port -> host port
	for _, p := range s.Ports {
		published[p.target] = p.published
	}
	hosts := []string{name, s.Hostname}
	var serves []string
	for _, a := range deploySplitList(env["KAFKA_ADVERTISED_LISTENERS"]) {
		lname, addr, _ := strings.Cut(a, "://")
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			c.errorf("%s: KAFKA_ADVERTISED_LISTENERS has %q: want NAME://host:port", where, a)
			continue
		}
		lport, ok := listeners[lname]
		if !ok {
			c.errorf("%s: advertises %s, which is not in KAFKA_LISTENERS", where, lname)
			continue
		}
		if lport != port {
			c.errorf("%s: advertises %s on port %s but listens on %s", where, lname, port, lport)
		}
		switch {
		case slices.Contains(hosts, host):
			serves = append(serves, port)
		case host == "localhost" || host == "127.0.0.1":
			// For clients on the host: the advertised port must be published as is.
			if published[lport] != port {
				c.errorf("%s: advertises %s for host clients but does not publish %s:%s", where, addr, port, lport)
			}
		}
	}
	if len(serves) == 0 {
		c.errorf("%s: advertises no listener as %s:<port>: clients on the compose network cannot reach it", where, name)
	}
	if ctl := env["KAFKA_CONTROLLER_LISTENER_NAMES"]; ctl != "" {
		for _, v := range deploySplitList(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]) {
			_, addr, _ := strings.Cut(v, "@")
			host, port, _ := net.SplitHostPort(addr)
			if !slices.Contains(hosts, host) || port != listeners[ctl] {
				c.errorf("%s: KAFKA_CONTROLLER_QUORUM_VOTERS %s: want %s:%s (the %s listener)", where, v, name, listeners[ctl], ctl)
			}
		}
	}
	if env["KAFKA_PROCESS_ROLES"] != "" {
		if id, err := base64.RawURLEncoding.DecodeString(env["CLUSTER_ID"]); err != nil || len(id) != 16 {
			c.errorf("%s: CLUSTER_ID=%q: KRaft needs a base64url UUID (22 characters, 16 bytes)", where, env["CLUSTER_ID"])
		}
	}
	if env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] != "true" {
		c.errorf("%s: KAFKA_AUTO_CREATE_TOPICS_ENABLE is not true: the bridge writes to mist.<topic> topics that nobody created", where)
	}
	if s.Healthcheck == nil || s.Healthcheck.Disable {
		c.errorf("%s: no healthcheck", where)
	}
	return serves
}

// checkNATS checks a nats service and returns the client port it serves.
func (c *deployCheck) checkNATS(where string, s *composeService) []string {
	flag := func(names ...string) (string, bool) {
		for i, a := range s.Command {
			for _, n := range names {
				if a == n {
					if i+1 < len(s.Command) && !strings.HasPrefix(s.Command[i+1], "-") {
						return s.Command[i+1], true
					}
					return "", true
				}
				if v, ok := strings.CutPrefix(a, n+"="); ok {
					return v, true
				}
			}
		}
		return "", false
	}
	if _, ok := flag("-js", "--jetstream"); !ok {
		c.errorf("%s: nats-server runs without --jetstream: the bridge publishes to a JetStream stream", where)
	}
	if dir, ok := flag("-sd", "--store_dir"); ok {
		onVolume := false
		for _, v := range s.Volumes {
			onVolume = onVolume || v.source != "" && path.Clean(v.target) == path.Clean(dir)
		}
		if !onVolume {
			c.errorf("%s: --store_dir %s is not on a named volume: JetStream data is lost with the container", where, dir)
		}
	} else {
		c.errorf("%s: nats-server without --store_dir on a volume", where)
	}
	port, ok := flag("-p", "--port")
	if !ok {
		port = "4222"
	}
	monitor, ok := flag("-m", "--http_port")
	if !ok {
		c.errorf("%s: nats-server without a monitoring port (-m): its healthcheck has nothing to ask", where)
	} else if s.Healthcheck == nil || s.Healthcheck.Disable || !strings.Contains(strings.Join(s.Healthcheck.Test, " "), ":"+monitor+"/") {
		c.errorf("%s: the healthcheck does not ask the monitoring port %s", where, monitor)
	}
	return []string{port}
}

func deploySplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func deploySortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---- deploy/kubernetes ----

type k8sObject struct {
	file string
	obj  map[string]any
}

func (o k8sObject) kind() string { return k8sStr(o.obj["kind"]) }
func (o k8sObject) name() string { return k8sStr(k8sDig(o.obj, "metadata", "name")) }

// k8sDig walks maps by key.
func k8sDig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func k8sStr(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func k8sList(v any) []any {
	l, _ := v.([]any)
	return l
}

func k8sLabels(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, x := range m {
		out[k] = k8sStr(x)
	}
	return out
}

// k8sSelects reports whether a non-empty selector matches the labels.
func k8sSelects(sel, lbl map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if lbl[k] != v {
			return false
		}
	}
	return true
}

func (c *deployCheck) checkKubernetes() {
	const dir = "deploy/kubernetes"
	kust, err := c.repo.read(dir + "/kustomization.yaml")
	if err != nil {
		c.errorf("%s/kustomization.yaml: %v", dir, err)
		return
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal([]byte(kust), &k); err != nil {
		c.errorf("%s/kustomization.yaml: %v", dir, err)
		return
	}
	entries, _ := os.ReadDir(filepath.Join(c.repo.root, dir))
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml") {
			files = append(files, e.Name())
		}
	}
	for _, f := range files {
		if f != "kustomization.yaml" && !strings.Contains(f, ".example.") && !slices.Contains(k.Resources, f) {
			c.errorf("%s/%s is not listed in kustomization.yaml resources", dir, f)
		}
	}
	var objs []k8sObject
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		text, err := c.repo.read(dir + "/" + f)
		if err != nil {
			c.errorf("%s/%s: %v", dir, f, err)
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(text))
		for {
			var o map[string]any
			if err := dec.Decode(&o); err != nil {
				if !errors.Is(err, io.EOF) {
					c.errorf("%s/%s: %v", dir, f, err)
				}
				break
			}
			if o != nil {
				objs = append(objs, k8sObject{file: dir + "/" + f, obj: o})
			}
		}
	}
	for _, r := range k.Resources {
		if !c.repo.exists(dir + "/" + r) {
			c.errorf("%s/kustomization.yaml lists %s, which does not exist", dir, r)
		}
	}
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.kind()] = append(byKind[o.kind()], o)
	}
	// A Deployment left beside the StatefulSet would run a second set of pods
	// with the same labels, each with a data directory that dies with it.
	if n := len(byKind["Deployment"]); n > 0 {
		c.errorf("%s: %d Deployment(s) besides the StatefulSet: the bridge keeps its spool on a volumeClaimTemplate, so it runs as a StatefulSet only", dir, n)
	}
	for _, kind := range []string{"StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret"} {
		if len(byKind[kind]) != 1 {
			c.errorf("%s: want one %s, found %d", dir, kind, len(byKind[kind]))
			return
		}
	}
	sts := byKind["StatefulSet"][0]
	where := fmt.Sprintf("%s StatefulSet %s", sts.file, sts.name())
	podLabels := k8sLabels(k8sDig(sts.obj, "spec", "template", "metadata", "labels"))
	if sel := k8sLabels(k8sDig(sts.obj, "spec", "selector", "matchLabels")); !k8sSelects(sel, podLabels) {
		c.errorf("%s: StatefulSet selector %v does not match its pod labels %v", where, sel, podLabels)
	}
	// Services: one with a cluster IP for webhook traffic, and the headless
	// one that governs the StatefulSet (spec.serviceName: pod identities).
	var traffic int
	for _, svc := range byKind["Service"] {
		if sel := k8sLabels(k8sDig(svc.obj, "spec", "selector")); !k8sSelects(sel, podLabels) {
			c.errorf("%s: Service %s selector %v does not match the pod labels %v", svc.file, svc.name(), sel, podLabels)
		}
		if k8sStr(k8sDig(svc.obj, "spec", "clusterIP")) != "None" {
			traffic++
		}
	}
	if traffic != 1 {
		c.errorf("%s: want one Service with a cluster IP for the webhook traffic, found %d", dir, traffic)
	}
	governing := k8sStr(k8sDig(sts.obj, "spec", "serviceName"))
	var headless map[string]any
	for _, svc := range byKind["Service"] {
		if svc.name() == governing {
			headless = svc.obj
		}
	}
	switch {
	case governing == "":
		c.errorf("%s: no spec.serviceName: want the headless Service that gives each pod its identity", where)
	case headless == nil:
		c.errorf("%s: serviceName %q: no Service of that name here (want a headless Service, clusterIP: None)", where, governing)
	case k8sStr(k8sDig(headless, "spec", "clusterIP")) != "None":
		c.errorf("%s: serviceName %q names a Service with a cluster IP: want a headless Service (clusterIP: None) to govern the StatefulSet", where, governing)
	}
	// How the StatefulSet scales, updates and keeps its claims.
	if r := k8sDig(sts.obj, "spec", "replicas"); r != nil {
		c.errorf("%s: sets spec.replicas %v: the HorizontalPodAutoscaler owns the count, and every apply would reset it", where, r)
	}
	if p := k8sStr(k8sDig(sts.obj, "spec", "podManagementPolicy")); p != "Parallel" {
		c.errorf("%s: podManagementPolicy %q: want Parallel (the replicas are interchangeable for traffic; OrderedReady adds and removes them one by one)", where, p)
	}
	us := k8sDig(sts.obj, "spec", "updateStrategy")
	if t := k8sStr(k8sDig(us, "type")); t != "" && t != "RollingUpdate" {
		c.errorf("%s: updateStrategy %s: want RollingUpdate, one pod at a time (OnDelete never replaces a running pod)", where, t)
	}
	if mu := k8sDig(us, "rollingUpdate", "maxUnavailable"); mu != nil && k8sStr(mu) != "1" {
		c.errorf("%s: updateStrategy maxUnavailable %v: want one pod at a time", where, mu)
	}
	for _, when := range []string{"whenScaled", "whenDeleted"} {
		if p := k8sStr(k8sDig(sts.obj, "spec", "persistentVolumeClaimRetentionPolicy", when)); p != "" && p != "Retain" {
			c.errorf("%s: persistentVolumeClaimRetentionPolicy.%s %s: want Retain: a claim may hold spooled events answered 200 and not delivered yet", where, when, p)
		}
	}

	svc := byKind["Service"]
	pdb := byKind["PodDisruptionBudget"][0]
	if sel := k8sLabels(k8sDig(pdb.obj, "spec", "selector", "matchLabels")); !k8sSelects(sel, podLabels) {
		c.errorf("%s: PodDisruptionBudget %s selector %v does not match the pod labels %v", pdb.file, pdb.name(), sel, podLabels)
	}
	hpa := byKind["HorizontalPodAutoscaler"][0]
	hw := hpa.file + " HorizontalPodAutoscaler " + hpa.name()
	if api := k8sStr(hpa.obj["apiVersion"]); api != "autoscaling/v2" {
		c.errorf("%s: apiVersion %s: want autoscaling/v2", hw, api)
	}
	ref := k8sDig(hpa.obj, "spec", "scaleTargetRef")
	if k8sStr(k8sDig(ref, "kind")) != "StatefulSet" || k8sStr(k8sDig(ref, "name")) != sts.name() || k8sStr(k8sDig(ref, "apiVersion")) != "apps/v1" {
		c.errorf("%s: scales %s %q (%s): want apps/v1 StatefulSet %q", hw, k8sStr(k8sDig(ref, "kind")), k8sStr(k8sDig(ref, "name")), k8sStr(k8sDig(ref, "apiVersion")), sts.name())
	}
	cpu := false
	for _, m := range k8sList(k8sDig(hpa.obj, "spec", "metrics")) {
		cpu = cpu || k8sStr(k8sDig(m, "type")) == "Resource" && k8sStr(k8sDig(m, "resource", "name")) == "cpu"
	}
	if !cpu {
		c.errorf("%s: no CPU resource metric", hw)
	}
	minReplicas, _ := k8sDig(hpa.obj, "spec", "minReplicas").(int)
	if minAvail, ok := k8sDig(pdb.obj, "spec", "minAvailable").(int); ok && minReplicas <= minAvail {
		c.errorf("%s: minReplicas %d is not above the PodDisruptionBudget's minAvailable %d: a node drain would block", hw, minReplicas, minAvail)
	}

	// The bridge container.
	pod := k8sDig(sts.obj, "spec", "template", "spec")
	var ctr any
	for _, x := range k8sList(k8sDig(pod, "containers")) {
		if k8sStr(k8sDig(x, "name")) == "mistbridge" {
			ctr = x
		}
	}
	if ctr == nil {
		c.errorf("%s: no container named mistbridge", where)
		return
	}
	// Objects that env may reference.
	keysOf := func(kind, name string) (map[string]bool, bool) {
		for _, o := range byKind[kind] {
			if o.name() == name {
				keys := map[string]bool{}
				for _, field := range []string{"data", "stringData"} {
					for k := range k8sLabels(o.obj[field]) {
						keys[k] = true
					}
				}
				return keys, true
			}
		}
		return nil, false
	}
	env := map[string]string{}
	for _, e := range k8sList(k8sDig(ctr, "env")) {
		name := k8sStr(k8sDig(e, "name"))
		c.checkVariable(where+" env", name)
		env[name] = k8sStr(k8sDig(e, "value"))
		for _, ref := range []struct{ field, kind string }{{"secretKeyRef", "Secret"}, {"configMapKeyRef", "ConfigMap"}} {
			r := k8sDig(e, "valueFrom", ref.field)
			if r == nil {
				continue
			}
			rname, key := k8sStr(k8sDig(r, "name")), k8sStr(k8sDig(r, "key"))
			if keys, ok := keysOf(ref.kind, rname); !ok {
				c.errorf("%s: env %s comes from %s %q, which no manifest here defines", where, name, ref.kind, rname)
			} else if !keys[key] {
				c.errorf("%s: env %s comes from %s %q, which has no key %q (it has %s)", where, name, ref.kind, rname, key, strings.Join(deploySortedKeys(keys), ", "))
			}
		}
	}
	for _, e := range k8sList(k8sDig(ctr, "envFrom")) {
		for _, ref := range []struct{ field, kind string }{{"secretRef", "Secret"}, {"configMapRef", "ConfigMap"}} {
			r := k8sDig(e, ref.field)
			if r == nil {
				continue
			}
			keys, ok := keysOf(ref.kind, k8sStr(k8sDig(r, "name")))
			if !ok {
				c.errorf("%s: envFrom %s %q, which no manifest here defines", where, ref.kind, k8sStr(k8sDig(r, "name")))
			}
			for k := range keys {
				c.checkVariable(fmt.Sprintf("%s envFrom %s %s", where, ref.kind, k8sStr(k8sDig(r, "name"))), k8sStr(k8sDig(e, "prefix"))+k)
			}
		}
	}
	// Ports and probes.
	listen := c.portOf(where+" MISTBRIDGE_LISTEN_ADDR", c.value(env, "MISTBRIDGE_LISTEN_ADDR"))
	named := map[string]string{}
	found := false
	for _, p := range k8sList(k8sDig(ctr, "ports")) {
		port := k8sStr(k8sDig(p, "containerPort"))
		named[k8sStr(k8sDig(p, "name"))] = port
		found = found || port == listen
	}
	if !found {
		c.errorf("%s: listens on %s (MISTBRIDGE_LISTEN_ADDR) but declares no containerPort %s", where, listen, listen)
	}
	resolve := func(p any) string {
		if s, ok := p.(string); ok {
			return named[s]
		}
		return k8sStr(p)
	}
	for _, s := range svc {
		for _, p := range k8sList(k8sDig(s.obj, "spec", "ports")) {
			tp := k8sDig(p, "targetPort")
			if tp == nil {
				tp = k8sDig(p, "port")
			}
			if got := resolve(tp); got != listen {
				c.errorf("%s: Service %s targetPort %q reaches container port %q: want %s", s.file, s.name(), k8sStr(tp), got, listen)
			}
		}
	}
	for _, pr := range []struct{ name, path string }{
		{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}, {"startupProbe", "/healthz"},
	} {
		probe := k8sDig(ctr, pr.name)
		if probe == nil {
			if pr.name != "startupProbe" {
				c.errorf("%s: no %s", where, pr.name)
			}
			continue
		}
		get := k8sDig(probe, "httpGet")
		if p := k8sStr(k8sDig(get, "path")); p != pr.path {
			c.errorf("%s: %s GETs %s: want %s", where, pr.name, p, pr.path)
		}
		if p := resolve(k8sDig(get, "port")); p != listen {
			c.errorf("%s: %s port %s reaches container port %q: want %s", where, pr.name, k8sStr(k8sDig(get, "port")), p, listen)
		}
	}
	// Termination: a preStop pause lets load balancers forget the pod before
	// SIGTERM; the grace period covers the pause and the whole shutdown.
	var pause time.Duration
	preStop := k8sDig(ctr, "lifecycle", "preStop")
	switch {
	case preStop == nil:
		c.errorf("%s: no lifecycle.preStop: SIGTERM would arrive while load balancers still send to the pod (want preStop: {sleep: {seconds: N}})", where)
	case k8sDig(preStop, "sleep") != nil:
		s, ok := k8sDig(preStop, "sleep", "seconds").(int)
		if !ok || s <= 0 {
			c.errorf("%s: lifecycle.preStop.sleep.seconds %v: want a few seconds", where, k8sDig(preStop, "sleep", "seconds"))
		}
		pause = time.Duration(s) * time.Second
	case k8sDig(preStop, "exec") != nil:
		cmd := k8sList(k8sDig(preStop, "exec", "command"))
		if len(cmd) == 0 {
			c.errorf("%s: lifecycle.preStop.exec has no command", where)
			break
		}
		if c.image.parsed && !c.image.shell {
			// distroless or scratch: only what the Dockerfile installs exists.
			c.needFile(&c.image, where+" lifecycle.preStop", k8sStr(cmd[0]), "")
		}
		if len(cmd) >= 2 && path.Base(k8sStr(cmd[0])) == "sleep" {
			if n, err := strconv.Atoi(k8sStr(cmd[1])); err == nil {
				pause = time.Duration(n) * time.Second
			}
		}
	}
	grace, graceNote := 30, " (the default)"
	if g, ok := k8sDig(pod, "terminationGracePeriodSeconds").(int); ok {
		grace, graceNote = g, ""
	}
	drain := c.duration(where, env, "MISTBRIDGE_DRAIN_DELAY")
	shutdown := c.duration(where, env, "MISTBRIDGE_SHUTDOWN_TIMEOUT")
	if need := pause + drain + shutdown + deployCloseBudget; time.Duration(grace)*time.Second < need {
		c.errorf("%s: terminationGracePeriodSeconds %d%s is less than preStop %v + MISTBRIDGE_DRAIN_DELAY %v + MISTBRIDGE_SHUTDOWN_TIMEOUT %v + closing the spool and sinks %v = %v: the kubelet would kill the bridge before it answered every request in flight",
			where, grace, graceNote, pause, drain, shutdown, deployCloseBudget, need)
	}
	// Security.
	sc := func(key string) any {
		if v := k8sDig(ctr, "securityContext", key); v != nil {
			return v
		}
		return k8sDig(pod, "securityContext", key)
	}
	if sc("runAsNonRoot") != true {
		c.errorf("%s: runAsNonRoot is not true", where)
	}
	uid, ok := sc("runAsUser").(int)
	switch {
	case !ok || uid == 0:
		c.errorf("%s: runAsUser %v: want the image's non-root user", where, sc("runAsUser"))
	case c.image.uid >= 0 && uid != c.image.uid:
		c.errorf("%s: runAsUser %d differs from the Dockerfile's USER %d, which owns the image's data directory", where, uid, c.image.uid)
	}
	if k8sDig(ctr, "securityContext", "readOnlyRootFilesystem") != true {
		c.errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if k8sDig(ctr, "securityContext", "allowPrivilegeEscalation") != false {
		c.errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	for _, r := range []string{"requests.cpu", "requests.memory", "limits.cpu", "limits.memory"} {
		a, b, _ := strings.Cut(r, ".")
		if k8sDig(ctr, "resources", a, b) == nil {
			c.errorf("%s: no resources %s", where, r)
		}
	}
	// The data directory, and the spool in it, are on a volumeClaimTemplate:
	// the spool holds events answered 200 and not delivered yet, so it must
	// outlive the pod and come back to the same pod identity.
	dataDir := env["MISTBRIDGE_DATA_DIR"]
	if dataDir == "" {
		dataDir = c.value(c.image.env, "MISTBRIDGE_DATA_DIR")
	}
	const claim = "volumeClaimTemplate"
	volumes := map[string]string{} // name -> what backs it (emptyDir, ..., volumeClaimTemplate)
	for _, v := range k8sList(k8sDig(pod, "volumes")) {
		kind := "volume"
		for k := range k8sLabels(v) {
			if k != "name" {
				kind = k
			}
		}
		volumes[k8sStr(k8sDig(v, "name"))] = kind
	}
	claims := map[string]any{}
	for _, t := range k8sList(k8sDig(sts.obj, "spec", "volumeClaimTemplates")) {
		name := k8sStr(k8sDig(t, "metadata", "name"))
		if _, dup := volumes[name]; dup {
			c.errorf("%s: pod volume %q has the name of a volumeClaimTemplate: keep one", where, name)
		}
		claims[name] = t
		volumes[name] = claim
	}
	mounts := map[string]string{} // clean mountPath -> volume name
	for _, m := range k8sList(k8sDig(ctr, "volumeMounts")) {
		name := k8sStr(k8sDig(m, "name"))
		if _, ok := volumes[name]; !ok {
			c.errorf("%s: volumeMount %s names no volume of the pod and no volumeClaimTemplate", where, name)
		}
		mounts[path.Clean(k8sStr(k8sDig(m, "mountPath")))] = name
	}
	if vol, ok := mounts[path.Clean(dataDir)]; !ok {
		c.errorf("%s: no volume mounted at MISTBRIDGE_DATA_DIR=%s", where, dataDir)
	} else if kind := volumes[vol]; kind != "" && kind != claim {
		c.errorf("%s: MISTBRIDGE_DATA_DIR=%s is on volume %q, a pod %s: the spool must outlive the pod: mount a volumeClaimTemplate there", where, dataDir, vol, kind)
	}
	spoolDir, spoolWhat := deploySpoolDir(env, dataDir)
	mp, ok := deployMountOf(mounts, spoolDir)
	switch {
	case !ok:
		c.errorf("%s: the spool (%s) is on no mounted volume", where, spoolWhat)
	case volumes[mounts[mp]] != claim:
		if mp != path.Clean(dataDir) { // else reported above
			c.errorf("%s: the spool (%s) is on volume %q, a pod %s: want a volumeClaimTemplate", where, spoolWhat, mounts[mp], volumes[mounts[mp]])
		}
	default:
		// The claim holding the spool is larger than the spool's bound.
		raw := c.value(env, "MISTBRIDGE_SPOOL_MAX_BYTES")
		maxBytes, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			c.errorf("%s: MISTBRIDGE_SPOOL_MAX_BYTES=%q is not a whole number of bytes", where, raw)
			break
		}
		t := claims[mounts[mp]]
		storage := k8sStr(k8sDig(t, "spec", "resources", "requests", "storage"))
		size, ok := k8sQuantity(storage)
		if want := maxBytes + maxBytes/10; !ok || size < want {
			c.errorf("%s: volumeClaimTemplate %s requests storage %q: want at least MISTBRIDGE_SPOOL_MAX_BYTES=%d plus 10%% (%d bytes) for the filesystem and the receivers database, more with the embedded NATS store",
				where, mounts[mp], storage, maxBytes, want)
		}
	}
}

// deployCloseBudget is how long the bridge may take after
// MISTBRIDGE_SHUTDOWN_TIMEOUT: cmd/mistbridge/main.go closes the spool, then
// the sinks, each with its own 10-second context. Keep it in step with main.go.
const deployCloseBudget = 20 * time.Second

// duration is a duration variable's value in env (its default when unset, or
// set from a Secret), or 0 with a problem.
func (c *deployCheck) duration(where string, env map[string]string, key string) time.Duration {
	s := env[key]
	if s == "" {
		s = c.value(nil, key)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.errorf("%s: %s=%q is not a duration: the bridge would not start", where, key, s)
		return 0
	}
	return d
}

// deploySpoolDir is where the bridge keeps its spool, and how to name it in
// a problem: MISTBRIDGE_SPOOL_DIR, else <MISTBRIDGE_DATA_DIR>/spool.
func deploySpoolDir(env map[string]string, dataDir string) (dir, what string) {
	if d := env["MISTBRIDGE_SPOOL_DIR"]; d != "" {
		return d, "MISTBRIDGE_SPOOL_DIR=" + d
	}
	dir = path.Join(dataDir, "spool")
	return dir, dir + ", under MISTBRIDGE_DATA_DIR"
}

// deployMountOf is the mount point (a key of mounts, clean) that holds p:
// p itself or its nearest parent.
func deployMountOf[V any](mounts map[string]V, p string) (string, bool) {
	if !path.IsAbs(p) {
		return "", false
	}
	for p = path.Clean(p); ; p = path.Dir(p) {
		if _, ok := mounts[p]; ok {
			return p, true
		}
		if p == "/" {
			return "", false
		}
	}
}

// k8sQuantity reads a Kubernetes storage quantity ("2Gi", "500M",
// "1073741824") in bytes.
func k8sQuantity(s string) (int64, bool) {
	units := map[string]float64{
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
		"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
	}
	num, mult := s, 1.0
	for u, m := range units {
		if n, ok := strings.CutSuffix(s, u); ok && len(n) < len(num) {
			num, mult = n, m
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || s == "" {
		return 0, false
	}
	return int64(f * mult), true
}
