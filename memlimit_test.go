// memlimit_test.go: the container's memory limit as cgroup v1 and v2 publish it, the soft
// limit derived from it, and what applyRuntimeLimits gives the Go runtime.
package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

// The files as container runtimes write them: a number or "max" and a newline.
func cgroupFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func TestMemoryLimitFromCgroup(t *testing.T) {
	const v2, v1 = "/" + cgroupV2MemoryMax, "/" + cgroupV1MemoryMax
	tests := []struct {
		name      string
		fsys      fstest.MapFS
		wantLimit int64
		wantFile  string
		wantErr   string
	}{
		{"v2 without a limit", cgroupFS(map[string]string{cgroupV2MemoryMax: "max\n"}), 0, v2, ""},
		{"v2 with 128Mi", cgroupFS(map[string]string{cgroupV2MemoryMax: "134217728\n"}), 128 << 20, v2, ""},
		{"v2 answers before v1", cgroupFS(map[string]string{cgroupV2MemoryMax: "max\n", cgroupV1MemoryMax: "134217728\n"}), 0, v2, ""},
		{"v1 unlimited (4 KiB pages)", cgroupFS(map[string]string{cgroupV1MemoryMax: "9223372036854771712\n"}), 0, v1, ""},
		{"v1 unlimited (64 KiB pages)", cgroupFS(map[string]string{cgroupV1MemoryMax: "9223372036854710272\n"}), 0, v1, ""},
		{"v1 with 256Mi", cgroupFS(map[string]string{cgroupV1MemoryMax: "268435456\n"}), 256 << 20, v1, ""},
		{"no cgroup files (not in a container, or not Linux)", cgroupFS(nil), 0, "", ""},
		{"only unrelated cgroup files", cgroupFS(map[string]string{"sys/fs/cgroup/cpu.max": "max 100000\n"}), 0, "", ""},
		{"v2 garbage", cgroupFS(map[string]string{cgroupV2MemoryMax: "lots\n"}), 0, v2, `"lots" is not a memory limit`},
		{"v2 empty", cgroupFS(map[string]string{cgroupV2MemoryMax: ""}), 0, v2, `"" is not a memory limit`},
		{"v1 zero", cgroupFS(map[string]string{cgroupV1MemoryMax: "0\n"}), 0, v1, `"0" is not a memory limit`},
		{"v1 negative", cgroupFS(map[string]string{cgroupV1MemoryMax: "-1\n"}), 0, v1, `"-1" is not a memory limit`},
		{"v2 unreadable (a directory)", fstest.MapFS{cgroupV2MemoryMax + "/x": &fstest.MapFile{}}, 0, v2, "read " + v2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit, file, err := cgroupMemoryLimit(tt.fsys)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v, want none", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if limit != tt.wantLimit || file != tt.wantFile {
				t.Errorf("got %d from %q, want %d from %q", limit, file, tt.wantLimit, tt.wantFile)
			}
		})
	}
}

func TestMemoryLimitAutoIsAShareOfTheContainerOrTheFloor(t *testing.T) {
	tests := []struct {
		name       string
		fsys       fstest.MapFS
		wantLimit  int64
		wantSmall  bool
		wantErr    bool
		wantSource string
	}{
		// The shipped Deployment's 128Mi container: 96 MiB for the runtime.
		{"128Mi container", cgroupFS(map[string]string{cgroupV2MemoryMax: "134217728\n"}), 96 << 20, false, false, "75% of the container limit 134217728 in /sys/fs/cgroup/memory.max"},
		{"1Gi container (v1)", cgroupFS(map[string]string{cgroupV1MemoryMax: "1073741824\n"}), 768 << 20, false, false, "75% of the container limit"},
		{"64Mi container is below the floor", cgroupFS(map[string]string{cgroupV2MemoryMax: "67108864\n"}), 48 << 20, true, false, "75% of the container limit"},
		{"limit near 4 EiB does not overflow", cgroupFS(map[string]string{cgroupV2MemoryMax: "4611686018427387900\n"}), 3458764513820540925, false, false, "75%"},
		{"no container limit", cgroupFS(map[string]string{cgroupV2MemoryMax: "max\n"}), memoryLimitFloor, false, false, "floor 96 MiB (no container limit)"},
		{"v1 unlimited", cgroupFS(map[string]string{cgroupV1MemoryMax: "9223372036854771712\n"}), memoryLimitFloor, false, false, "no container limit"},
		{"no cgroup at all", cgroupFS(nil), memoryLimitFloor, false, false, "no container limit"},
		{"unreadable limit", cgroupFS(map[string]string{cgroupV2MemoryMax: "lots\n"}), memoryLimitFloor, false, true, "container limit unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit, source, small, err := autoMemoryLimit(tt.fsys)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if limit != tt.wantLimit || small != tt.wantSmall {
				t.Errorf("limit %d small %v, want %d small %v", limit, small, tt.wantLimit, tt.wantSmall)
			}
			if !strings.Contains(source, tt.wantSource) {
				t.Errorf("source %q, want it to say %q", source, tt.wantSource)
			}
		})
	}
}

// applyRuntimeLimits changes process-wide settings: each case puts back what it found.
func restoreRuntimeLimits(t *testing.T) {
	t.Helper()
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	})
}

func TestRuntimeLimitsAppliedFromConfigAndContainer(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string // configuration and GOGC / GOMEMLIMIT
		fsys       fstest.MapFS
		wantGC     int
		wantLimit  int64 // what the runtime uses; math.MaxInt64 = none
		wantSource string
		wantWarn   string
	}{
		{"defaults in a 256Mi container", nil, cgroupFS(map[string]string{cgroupV2MemoryMax: "268435456\n"}),
			100, 192 << 20, "75% of the container limit", ""},
		{"defaults outside a container", nil, cgroupFS(nil),
			100, memoryLimitFloor, "floor", ""},
		{"explicit limit wins over the container", map[string]string{"GATEWAY_MEMORY_LIMIT": "200MiB", "GATEWAY_GC_PERCENT": "250"},
			cgroupFS(map[string]string{cgroupV2MemoryMax: "134217728\n"}), 250, 200 << 20, "GATEWAY_MEMORY_LIMIT", ""},
		{"explicit 0 means no limit", map[string]string{"GATEWAY_MEMORY_LIMIT": "0"}, cgroupFS(map[string]string{cgroupV2MemoryMax: "134217728\n"}),
			100, math.MaxInt64, "none", ""},
		{"small container warns", nil, cgroupFS(map[string]string{cgroupV2MemoryMax: "67108864\n"}),
			100, 48 << 20, "75% of the container limit", "container memory limit is small"},
		{"unreadable container limit warns and uses the floor", nil, cgroupFS(map[string]string{cgroupV2MemoryMax: "lots\n"}),
			100, memoryLimitFloor, "unreadable", "container memory limit unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restoreRuntimeLimits(t)
			env := productionEnv()
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := loadConfig(envOf(env), false)
			if err != nil {
				t.Fatal(err)
			}
			log, logs := newTestLogger(slog.LevelInfo)
			applyRuntimeLimits(cfg, envOf(env), tt.fsys, log)

			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Errorf("runtime memory limit %d, want %d", got, tt.wantLimit)
			}
			if got := debug.SetGCPercent(tt.wantGC); got != tt.wantGC {
				t.Errorf("runtime GC percent %d, want %d", got, tt.wantGC)
			}
			var runtimeLine map[string]any
			var warned bool
			for _, l := range logs.lines(t) {
				if l["msg"] == "runtime" {
					runtimeLine = l
				}
				if msg, _ := l["msg"].(string); tt.wantWarn != "" && l["level"] == "WARN" && strings.Contains(msg, tt.wantWarn) {
					warned = true
				}
			}
			if runtimeLine == nil {
				t.Fatalf("no runtime log line; log:\n%s", logs.String())
			}
			wantLogged := tt.wantLimit
			if wantLogged == math.MaxInt64 {
				wantLogged = 0
			}
			if runtimeLine["memory_limit"] != float64(wantLogged) || runtimeLine["gc_percent"] != float64(tt.wantGC) {
				t.Errorf("logged memory_limit %v gc_percent %v, want %d and %d", runtimeLine["memory_limit"], runtimeLine["gc_percent"], wantLogged, tt.wantGC)
			}
			if src, _ := runtimeLine["memory_limit_source"].(string); !strings.Contains(src, tt.wantSource) {
				t.Errorf("logged memory_limit_source %q, want it to say %q", src, tt.wantSource)
			}
			if tt.wantWarn != "" && !warned {
				t.Errorf("no WARN line saying %q; log:\n%s", tt.wantWarn, logs.String())
			}
		})
	}
}

// GOGC and GOMEMLIMIT in the environment are the operator's last word: the gateway leaves
// the runtime's values alone and says where they came from.
func TestRuntimeLimitsLeaveGOGCAndGOMEMLIMITAlone(t *testing.T) {
	restoreRuntimeLimits(t)
	debug.SetGCPercent(321)
	debug.SetMemoryLimit(123 << 20)
	env := productionEnv()
	env["GOGC"], env["GOMEMLIMIT"] = "321", "123MiB"
	cfg, err := loadConfig(envOf(env), false)
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newTestLogger(slog.LevelInfo)
	// A container too small for auto: not auto's business once GOMEMLIMIT is set.
	applyRuntimeLimits(cfg, envOf(env), cgroupFS(map[string]string{cgroupV2MemoryMax: "67108864\n"}), log)
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("runtime memory limit %d, want GOMEMLIMIT's %d", got, 123<<20)
	}
	if got := debug.SetGCPercent(321); got != 321 {
		t.Errorf("runtime GC percent %d, want GOGC's 321", got)
	}
	lines := logs.lines(t)
	for _, l := range lines {
		if l["level"] == "WARN" {
			t.Errorf("WARN about the container although GOMEMLIMIT decides: %v", l)
		}
	}
	if len(lines) == 0 || lines[len(lines)-1]["memory_limit_source"] != "GOMEMLIMIT" || lines[len(lines)-1]["gc_percent"] != 321.0 {
		t.Errorf("runtime log line %v, want memory_limit_source GOMEMLIMIT and gc_percent 321", lines)
	}
}
