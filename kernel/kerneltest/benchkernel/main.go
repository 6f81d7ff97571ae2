// Command benchkernel measures Jupyter kernels through the wire protocol with
// a Go client (kernel/wire), so that client overhead is the same for every
// kernel measured:
//
//   - startup: launch of the process to the kernel_info_reply;
//   - round trip of a trivial execute_request ("1") to its idle status;
//   - resident memory after 10,000 executes against after a warm-up.
//
// scripts/bench-kernel runs it on gopeft and on Debian's ipykernel in the
// same run and prints the ratios.
//
//	benchkernel -kernel 'gopeft=/path/gopeft kernel -f {connection_file}' \
//	            -kernel 'ipykernel=/usr/bin/python3 -m ipykernel_launcher -f {connection_file}'
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gopeft/gopeft/kernel/wire"
)

type kernelFlag []string

func (k *kernelFlag) String() string     { return strings.Join(*k, ", ") }
func (k *kernelFlag) Set(v string) error { *k = append(*k, v); return nil }

type result struct {
	name                 string
	startups             []time.Duration
	p50, p99, mean       time.Duration
	rssWarm, rssEnd      int64 // KiB
	rssAt                []int64
	roundTrips, memLoops int
	firstExecute         time.Duration
}

func main() {
	var kernels kernelFlag
	flag.Var(&kernels, "kernel", "NAME=ARGV with {connection_file} (repeatable)")
	startups := flag.Int("startups", 5, "launches measured per kernel")
	n := flag.Int("n", 1000, "execute round trips timed")
	mem := flag.Int("mem", 10000, "executes between the two memory readings")
	code := flag.String("code", "1", "the trivial cell")
	flag.Parse()
	if len(kernels) == 0 {
		fmt.Fprintln(os.Stderr, "benchkernel: no -kernel given")
		os.Exit(2)
	}
	var results []result
	for _, k := range kernels {
		name, argv, ok := strings.Cut(k, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "benchkernel: -kernel %q: want NAME=ARGV\n", k)
			os.Exit(2)
		}
		r, err := bench(name, strings.Fields(argv), *startups, *n, *mem, *code)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchkernel: %s: %v\n", name, err)
			os.Exit(1)
		}
		results = append(results, r)
	}
	report(results)
}

type running struct {
	cmd *exec.Cmd
	cl  *wire.Client
	dir string
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// launch starts the kernel and returns once kernel_info_reply arrived, with
// the time that took from the start of the process.
func launch(argv []string) (*running, time.Duration, error) {
	dir, err := os.MkdirTemp("", "benchkernel")
	if err != nil {
		return nil, 0, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, 0, err
	}
	ci := wire.ConnectionInfo{Transport: "tcp", IP: "127.0.0.1", Key: wire.NewID(), SignatureScheme: "hmac-sha256",
		ShellPort: ports[0], ControlPort: ports[1], StdinPort: ports[2], IOPubPort: ports[3], HBPort: ports[4]}
	b, _ := json.Marshal(ci)
	cf := filepath.Join(dir, "kernel.json")
	if err := os.WriteFile(cf, b, 0o600); err != nil {
		return nil, 0, err
	}
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = strings.ReplaceAll(a, "{connection_file}", cf)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = nil
	cmd.Stdout = nil
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	r := &running{cmd: cmd, dir: dir}
	cl, err := wire.Dial(ci)
	if err != nil {
		r.stop()
		return nil, 0, err
	}
	r.cl = cl
	req := cl.NewRequest("kernel_info_request", map[string]any{})
	if err := cl.Send(wire.Shell, req); err != nil {
		r.stop()
		return nil, 0, err
	}
	for {
		m, err := cl.Recv(wire.Shell, 30*time.Second)
		if err != nil {
			r.stop()
			return nil, 0, err
		}
		if m.Header.MsgType == "kernel_info_reply" {
			return r, time.Since(t0), nil
		}
	}
}

func (r *running) stop() {
	if r.cl != nil {
		r.cl.Send(wire.Control, r.cl.NewRequest("shutdown_request", map[string]any{"restart": false}))
	}
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-done
	}
	if r.cl != nil {
		r.cl.Close()
	}
	os.RemoveAll(r.dir)
}

// execute sends code and waits for the idle status it causes.
func (r *running) execute(code string) (time.Duration, error) {
	t0 := time.Now()
	req := r.cl.NewRequest("execute_request", map[string]any{"code": code, "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
	if err := r.cl.Send(wire.Shell, req); err != nil {
		return 0, err
	}
	gotReply, idle := false, false
	var d time.Duration
	for !gotReply || !idle {
		if !idle {
			m, err := r.cl.Recv(wire.IOPub, 60*time.Second)
			if err != nil {
				return 0, err
			}
			var p wire.Header
			json.Unmarshal(m.Parent, &p)
			if p.MsgID == req.Header.MsgID && m.Header.MsgType == "status" && strings.Contains(string(m.RawContent()), `"idle"`) {
				idle = true
				d = time.Since(t0)
			}
			continue
		}
		m, err := r.cl.Recv(wire.Shell, 60*time.Second)
		if err != nil {
			return 0, err
		}
		var p wire.Header
		json.Unmarshal(m.Parent, &p)
		if p.MsgID == req.Header.MsgID {
			gotReply = true
			if !strings.Contains(string(m.RawContent()), `"ok"`) {
				return 0, fmt.Errorf("execute %q: %s", code, m.RawContent())
			}
		}
	}
	return d, nil
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

func bench(name string, argv []string, startups, n, mem int, code string) (result, error) {
	res := result{name: name, roundTrips: n, memLoops: mem}
	fmt.Fprintf(os.Stderr, "%s: %d launches...\n", name, startups)
	for i := 0; i < startups; i++ {
		r, d, err := launch(argv)
		if err != nil {
			return res, err
		}
		res.startups = append(res.startups, d)
		r.stop()
	}
	r, _, err := launch(argv)
	if err != nil {
		return res, err
	}
	defer r.stop()
	// Subscription to IOPub is asynchronous: retry until an idle arrives.
	for i := 0; ; i++ {
		d, err := r.execute(code)
		if err == nil {
			res.firstExecute = d
			break
		}
		if i == 20 {
			return res, err
		}
	}
	for i := 0; i < 200; i++ { // warm-up
		if _, err := r.execute(code); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %d round trips...\n", name, n)
	ds := make([]time.Duration, n)
	var sum time.Duration
	for i := range ds {
		d, err := r.execute(code)
		if err != nil {
			return res, err
		}
		ds[i] = d
		sum += d
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	res.p50, res.p99, res.mean = ds[n/2], ds[n*99/100], sum/time.Duration(n)
	res.rssWarm = rssKiB(r.cmd.Process.Pid)
	fmt.Fprintf(os.Stderr, "%s: %d executes for memory...\n", name, mem)
	for i := 1; i <= mem; i++ {
		if _, err := r.execute(code); err != nil {
			return res, err
		}
		if i%(max(mem/5, 1)) == 0 {
			res.rssAt = append(res.rssAt, rssKiB(r.cmd.Process.Pid))
		}
	}
	res.rssEnd = rssKiB(r.cmd.Process.Pid)
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func report(rs []result) {
	fmt.Printf("%-10s %14s %14s %12s %12s %12s %12s %12s %8s\n", "kernel", "startup(med)", "startup(max)",
		"rt p50", "rt p99", "rt mean", "RSS warm", "RSS end", "growth")
	for _, r := range rs {
		mx := r.startups[0]
		for _, d := range r.startups {
			mx = max(mx, d)
		}
		growth := float64(r.rssEnd-r.rssWarm) / float64(r.rssWarm) * 100
		fmt.Printf("%-10s %14s %14s %12s %12s %12s %9d KiB %9d KiB %7.1f%%\n", r.name, ms(median(r.startups)), ms(mx),
			ms(r.p50), ms(r.p99), ms(r.mean), r.rssWarm, r.rssEnd, growth)
	}
	for _, r := range rs {
		fmt.Printf("%-10s RSS KiB every %d executes: %v\n", r.name, max(r.memLoops/5, 1), r.rssAt)
	}
	if len(rs) >= 2 {
		a, b := rs[0], rs[1]
		fmt.Printf("\nratios %s/%s (above 1: %s is faster or leaner):\n", b.name, a.name, a.name)
		fmt.Printf("  startup %.1fx   rt p50 %.1fx   rt p99 %.1fx   RSS %.2fx\n",
			float64(median(b.startups))/float64(median(a.startups)),
			float64(b.p50)/float64(a.p50), float64(b.p99)/float64(a.p99),
			float64(b.rssEnd)/float64(a.rssEnd))
	}
	fmt.Printf("\nround trip: execute_request %q sent until its idle status, %d timed after 200 warm-up; memory: VmRSS after warm-up+round trips and after %d more executes\n",
		"1", rs[0].roundTrips, rs[0].memLoops)
}
