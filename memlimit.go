// memlimit.go: the Go runtime's soft memory limit when GATEWAY_MEMORY_LIMIT is auto, derived
// from the container's cgroup memory limit, and a floor when there is none.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// The soft limit's share of the container limit; the rest is what the kernel charges but Go does
// not count (mapped binary, socket buffers, the collector's overshoot).
const memoryLimitPercent = 75

// memoryLimitFloor applies without a container limit: in the README's load tests 1 000 clients
// keep a ~35 MiB heap (doubled by GC_PERCENT=100, plus ~25 MiB runtime); 64 MiB was too tight.
const memoryLimitFloor = 96 << 20

// Where cgroup v2 and v1 publish the container's memory limit (fs.FS paths: no leading slash).
const (
	cgroupV2MemoryMax = "sys/fs/cgroup/memory.max"
	cgroupV1MemoryMax = "sys/fs/cgroup/memory/memory.limit_in_bytes"
)

// cgroupUnlimited: cgroup v1 reports "no limit" as the largest page-aligned int64.
const cgroupUnlimited = 1 << 62

// cgroupMemoryLimit returns the container's memory limit read from fsys (e.g. os.DirFS("/"))
// and its file; 0 for none. cgroup v2 is read first, and its answer is final, even "max".
func cgroupMemoryLimit(fsys fs.FS) (limit int64, file string, err error) {
	for _, name := range []string{cgroupV2MemoryMax, cgroupV1MemoryMax} {
		data, err := fs.ReadFile(fsys, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		file = "/" + name
		if err != nil {
			return 0, file, fmt.Errorf("read %s: %w", file, err)
		}
		v := strings.TrimSpace(string(data))
		if v == "max" {
			return 0, file, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, file, fmt.Errorf("read %s: %q is not a memory limit in bytes", file, v)
		}
		if n >= cgroupUnlimited {
			return 0, file, nil
		}
		return n, file, nil
	}
	return 0, "", nil
}

// autoMemoryLimit is the soft limit for GATEWAY_MEMORY_LIMIT=auto; source says which, for the
// log. small: below the floor the collector runs continuously; the container limit should grow.
func autoMemoryLimit(fsys fs.FS) (limit int64, source string, small bool, err error) {
	hard, file, err := cgroupMemoryLimit(fsys)
	if err != nil {
		return memoryLimitFloor, fmt.Sprintf("floor %d MiB (container limit unreadable)", memoryLimitFloor>>20), false, err
	}
	if hard == 0 {
		return memoryLimitFloor, fmt.Sprintf("floor %d MiB (no container limit)", memoryLimitFloor>>20), false, nil
	}
	limit = hard/100*memoryLimitPercent + hard%100*memoryLimitPercent/100 // no overflow near 4 EiB
	return limit, fmt.Sprintf("%d%% of the container limit %d in %s", memoryLimitPercent, hard, file), limit < memoryLimitFloor, nil
}
