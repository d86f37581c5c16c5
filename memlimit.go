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

// The runtime's soft limit is this share of the container's hard limit. The rest is for what
// the Go runtime does not count but the kernel charges to the container: the binary's mapped
// text, kernel socket buffers of a thousand connections, and the runtime's own overshoot
// while the collector catches up. With the shipped 128 MiB container limit this gives 96 MiB.
const memoryLimitPercent = 75

// memoryLimitFloor is the soft limit when the container sets no limit (or there is no
// container), chosen with the default GATEWAY_GC_PERCENT of 100 from the load tests in the
// README. 1 000 concurrent clients keep a live heap of about 35 MiB; at 100 % the collector
// lets the heap reach twice that, and the runtime's own memory (stacks, free spans not yet
// returned, metadata) adds about 25 MiB: the two settings meet near 96 MiB, so below 1 000
// clients the percentage decides when the collector runs and the limit is only a backstop.
// 64 MiB left 1 000 clients a heap goal 3 MiB above the live heap (27 collections a second,
// most of the CPU); the previous 32 MiB did the same from about 150 clients.
const memoryLimitFloor = 96 << 20

// Where cgroup v2 and cgroup v1 publish the memory limit of the container the process runs
// in, relative to the root of the file system (fs.FS paths have no leading slash). Container
// runtimes mount the container's own cgroup at these places.
const (
	cgroupV2MemoryMax = "sys/fs/cgroup/memory.max"
	cgroupV1MemoryMax = "sys/fs/cgroup/memory/memory.limit_in_bytes"
)

// cgroupUnlimited: cgroup v1 reports "no limit" as the largest page-aligned int64
// (9223372036854771712 with 4 KiB pages, a little less with larger pages). No real limit
// comes near 4 EiB.
const cgroupUnlimited = 1 << 62

// cgroupMemoryLimit returns the container's memory limit in bytes, read from fsys (the root of
// the file system, e.g. os.DirFS("/")), and the file it came from. limit is 0 when neither
// cgroup file exists or the one that does says there is no limit. cgroup v2 is read first: on
// a host that has it, its answer is final, even "max".
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

// autoMemoryLimit is the soft limit for GATEWAY_MEMORY_LIMIT=auto: memoryLimitPercent of the
// container's limit, or memoryLimitFloor without one. source says which, for the start-up
// log. small is true when the container's limit gives less than the floor: the operator should
// raise it, since a soft limit near the live heap makes the collector run continuously, and a
// soft limit above the container's would let the kernel kill the process first.
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
