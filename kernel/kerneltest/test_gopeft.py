"""Conformance and behaviour tests of the gopeft kernel through real clients.

Run by scripts/test-kernel-clients, which builds gopeft, installs its
kernelspec into a temporary directory, points JUPYTER_PATH at it and runs

    /usr/bin/python3 -m unittest -v kernel/kerneltest/test_gopeft.py

GopeftKernelTests is the official jupyter_kernel_test suite with a sample for
every optional test it has. The other classes drive the kernel with
jupyter_client for what that suite does not cover: stdin, interrupts (an
interpreted infinite loop and a long compiled call), stop_on_error, restart,
comms and heartbeat, and a cell that allocates without bound (memory limit).
"""

import os
import signal
import threading
import time
import unittest

import jupyter_kernel_test
from jupyter_client.manager import start_new_kernel
from jupyter_kernel_test.msgspec_v5 import schema_fragments, validate_message

KERNEL_NAME = os.environ.get("GOPEFT_KERNEL_NAME", "gopeft")
TIMEOUT = 60  # the first cell of a fresh kernel waits for the interpreter


class GopeftKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "go"
    file_extension = ".go"

    code_hello_world = 'fmt.Println("hello, world")'
    code_stderr = 'fmt.Fprintln(os.Stderr, "to stderr")'

    completion_samples = [
        {"text": "strings.TrimSp", "matches": {"TrimSpace"}},
        {"text": "fmt.Sprintl", "matches": {"Sprintln"}},
    ]

    complete_code_samples = ["x := 1", "fmt.Println(1)", "func f() int { return 1 }", "import \"strings\""]
    incomplete_code_samples = ["func f() {", "for i := 0; i < 3; i++ {\n", "x := []int{\n1,"]
    invalid_code_samples = ["x := )", "}"]

    code_page_something = "fmt.Println?"

    code_generate_error = 'panic("boom")'

    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "1.5 + 1", "result": "2.5"},
        {"code": 'nb.HTML("<b>x</b>")', "mime": "text/html", "result": "<b>x</b>"},
    ]

    code_display_data = [
        {"code": 'nb.Display(nb.HTML("<b>hi</b>"))', "mime": "text/html"},
        {"code": 'nb.Display(nb.Markdown("# title"))', "mime": "text/markdown"},
        {"code": 'nb.Display(nb.SVG("<svg xmlns=\\"http://www.w3.org/2000/svg\\"></svg>"))', "mime": "image/svg+xml"},
    ]

    code_history_pattern = "6?7"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "fmt.Println"

    code_clear_output = "nb.ClearOutput(false)"

    # jupyter_kernel_test 0.4.5 (Debian) has no stdin test: see StdinTests.

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Wait for the interpreter so that the suite's 15 s timeouts hold.
        cls.kc.execute_interactive("0", timeout=TIMEOUT, output_hook=lambda msg: None)


def collect(kc, msg_id, timeout=TIMEOUT):
    """IOPub messages of msg_id from busy to idle, each validated."""
    out = []
    deadline = time.time() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] in schema_fragments:  # 0.4.5 has no comm schemas
            validate_message(msg, msg["msg_type"], msg_id)
        out.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out


def shell_reply(kc, msg_id, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while True:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


class KernelCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = start_new_kernel(kernel_name=KERNEL_NAME)
        cls.kc.execute_interactive("0", timeout=TIMEOUT, output_hook=lambda msg: None)

    @classmethod
    def tearDownClass(cls):
        cls.kc.stop_channels()
        cls.km.shutdown_kernel(now=False)

    def run_cell(self, code, **kw):
        msg_id = self.kc.execute(code, **kw)
        reply = shell_reply(self.kc, msg_id)
        return reply, collect(self.kc, msg_id)

    def text_result(self, code):
        reply, msgs = self.run_cell(code)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        for m in msgs:
            if m["msg_type"] == "execute_result":
                return m["content"]["data"]["text/plain"]
        self.fail("no execute_result for %r: %r" % (code, [m["msg_type"] for m in msgs]))


class StdinTests(KernelCase):
    def test_input_request(self):
        code = 'var name string\nfmt.Scanln(&name)\nfmt.Println("hello,", name)'
        msg_id = self.kc.execute(code, allow_stdin=True)
        req = self.kc.get_stdin_msg(timeout=TIMEOUT)
        # (jupyter_kernel_test 0.4.5's schema wrongly types password as a number)
        self.assertEqual(req["msg_type"], "input_request")
        self.assertEqual(req["parent_header"]["msg_id"], msg_id)
        self.assertIs(req["content"]["password"], False)
        self.assertIsInstance(req["content"]["prompt"], str)
        self.kc.input("Ada")
        reply = shell_reply(self.kc, msg_id)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        msgs = collect(self.kc, msg_id)
        text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
        self.assertIn("hello, Ada", text)

    def test_no_stdin_is_an_error_not_a_hang(self):
        code = 'var s string\n_, err := fmt.Scanln(&s)\nerr != nil'
        reply, msgs = self.run_cell(code, allow_stdin=False)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        results = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"]
        self.assertEqual(results, ["true"])


class InterruptTests(KernelCase):
    def interrupt_after_start(self, code, interrupt=None):
        msg_id = self.kc.execute(code)
        # Wait until the cell is running, then a little more.
        while True:
            msg = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                break
        time.sleep(0.5)
        t0 = time.time()
        (interrupt or self.km.interrupt_kernel)()
        reply = shell_reply(self.kc, msg_id, timeout=10)
        elapsed = time.time() - t0
        collect(self.kc, msg_id)
        return reply, elapsed

    def test_interrupt_interpreted_infinite_loop(self):
        self.assertEqual(self.text_result("kept := 41\nkept + 1"), "42")
        reply, elapsed = self.interrupt_after_start("n := 0\nfor {\n\tn++\n}")
        self.assertEqual(reply["content"]["status"], "error")
        self.assertIn("nterrupt", reply["content"]["ename"] + reply["content"]["evalue"])
        self.assertLess(elapsed, 1.0)
        self.assertEqual(self.text_result("kept"), "41")

    def test_interrupt_long_compiled_call(self):
        # An SVD of a 1500×1500 matrix runs for many seconds in compiled code;
        # it takes the cell's ctx, which the interrupt cancels.
        setup = ("before := \"still here\"\n"
                 "n := 1500\n"
                 "d := make([]float64, n*n)\n"
                 "for i := range d {\n\td[i] = float64((i*7919)%1009) / 1009\n}\n"
                 "big := mat.NewDense(n, n, d)\n")
        reply, _ = self.run_cell(setup)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        reply, elapsed = self.interrupt_after_start("svd, err := accel.ThinSVD(ctx, big)\nfmt.Println(svd, err)")
        self.assertEqual(reply["content"]["status"], "error", reply["content"])
        self.assertLess(elapsed, 1.0)
        self.assertEqual(self.text_result("before"), "still here")

    def test_sigint_fallback(self):
        # Front-ends that signal instead of sending interrupt_request.
        pid = self.km.provisioner.process.pid
        self.assertEqual(self.text_result("sig := 1\nsig"), "1")
        reply, elapsed = self.interrupt_after_start("for {\n}", lambda: os.kill(pid, signal.SIGINT))
        self.assertEqual(reply["content"]["status"], "error")
        self.assertLess(elapsed, 1.0)
        self.assertTrue(self.km.is_alive())
        os.kill(pid, signal.SIGINT)  # idle: ignored, not fatal
        time.sleep(0.2)
        self.assertTrue(self.km.is_alive())
        self.assertEqual(self.text_result("sig + 1"), "2")

    def test_interrupt_when_idle_is_harmless(self):
        self.km.interrupt_kernel()
        time.sleep(0.2)
        self.assertEqual(self.text_result("2*3"), "6")


class ProtocolTests(KernelCase):
    def test_stop_on_error_aborts_queued(self):
        # Like "run all": the later cells are queued while the first runs.
        ids = [self.kc.execute('time.Sleep(300 * time.Millisecond)\npanic("first")'),
               self.kc.execute("abortedVar := 1"),
               self.kc.execute("2")]
        statuses = [shell_reply(self.kc, i)["content"]["status"] for i in ids]
        self.assertEqual(statuses, ["error", "aborted", "aborted"])
        for i in ids:
            collect(self.kc, i)
        reply, _ = self.run_cell("abortedVar")
        self.assertEqual(reply["content"]["status"], "error", "an aborted cell must not have run")

    def test_stop_on_error_false_runs_queue(self):
        ids = [self.kc.execute('panic("first")', stop_on_error=False), self.kc.execute("7")]
        statuses = [shell_reply(self.kc, i)["content"]["status"] for i in ids]
        self.assertEqual(statuses, ["error", "ok"])
        for i in ids:
            collect(self.kc, i)

    def test_execution_count_and_silent(self):
        r1, _ = self.run_cell("1")
        r2, msgs = self.run_cell("2", silent=True)
        self.assertEqual([m["msg_type"] for m in msgs], ["status", "status"])
        r3, _ = self.run_cell("3")
        c1, c2, c3 = (r["content"]["execution_count"] for r in (r1, r2, r3))
        self.assertEqual(c3, c1 + 1)
        self.assertEqual(c2, c1)

    def test_state_persists_and_redefines(self):
        self.text_result("func twice(x int) int { return 2 * x }\ntwice(2)")
        self.assertEqual(self.text_result("twice(21)"), "42")
        self.text_result("func twice(x int) int { return 3 * x }\n0")
        self.assertEqual(self.text_result("twice(2)"), "6")

    def test_comm_info_and_comm_open(self):
        msg_id = self.kc.comm_info()
        reply = shell_reply(self.kc, msg_id)
        validate_message(reply, "comm_info_reply", msg_id)
        self.assertEqual(reply["content"]["comms"], {})
        collect(self.kc, msg_id)
        msg = self.kc.session.msg("comm_open", {"comm_id": "c-1", "target_name": "jupyter.widget", "data": {}})
        self.kc.shell_channel.send(msg)
        msgs = collect(self.kc, msg["header"]["msg_id"])
        closes = [m for m in msgs if m["msg_type"] == "comm_close"]
        self.assertEqual(len(closes), 1)
        self.assertEqual(closes[0]["content"]["comm_id"], "c-1")

    def test_unknown_message_type_is_ignored(self):
        msg = self.kc.session.msg("no_such_request", {})
        self.kc.shell_channel.send(msg)
        collect(self.kc, msg["header"]["msg_id"])
        self.assertEqual(self.text_result("40+2"), "42")

    def test_kernel_info_on_control(self):
        msg = self.kc.session.msg("kernel_info_request", {})
        self.kc.control_channel.send(msg)
        reply = self.kc.get_control_msg(timeout=10)
        validate_message(reply, "kernel_info_reply", msg["header"]["msg_id"])
        self.assertEqual(reply["content"]["protocol_version"], "5.3")
        self.assertEqual(reply["content"]["language_info"]["name"], "go")

    def test_large_message(self):
        # A 4 MB cell is well under the 256 MiB frame limit: it runs.
        payload = "a" * (4 << 20)
        self.assertEqual(self.text_result('big := "%s"\nlen(big)' % payload), str(4 << 20))

    def test_heartbeat(self):
        self.assertTrue(self.kc.hb_channel.is_beating())
        self.assertTrue(self.km.is_alive())

    def test_os_exit_does_not_end_kernel(self):
        self.text_result("survivor := 5\n0")
        reply, _ = self.run_cell("os.Exit(3)")
        self.assertEqual(reply["content"]["status"], "error")
        self.assertTrue(self.km.is_alive())
        self.assertEqual(self.text_result("survivor"), "5")


class MemoryLimitTests(KernelCase):
    """A cell that allocates without bound, under a kernel started with
    GOPEFT_MEMORY_LIMIT=300MB: a MemoryLimit error soon after the limit is
    crossed, earlier variables kept, the memory given back."""

    LIMIT = 300 * 10**6

    @classmethod
    def setUpClass(cls):
        env = dict(os.environ, GOPEFT_MEMORY_LIMIT="300MB")
        cls.km, cls.kc = start_new_kernel(kernel_name=KERNEL_NAME, env=env)
        cls.kc.execute_interactive("0", timeout=TIMEOUT, output_hook=lambda msg: None)

    def rss(self):
        with open("/proc/%d/status" % self.km.provisioner.process.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        self.fail("no VmRSS")

    def test_memlimit_shows_env_limit(self):
        reply, msgs = self.run_cell("%memlimit")
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
        self.assertIn("memory limit: 286.1 MiB (GOPEFT_MEMORY_LIMIT=300MB)", text)

    def test_unbounded_allocation(self):
        self.assertEqual(self.text_result("kept := 41\nkept + 1"), "42")
        rss0 = self.rss()
        for cell in ("var xs [][]byte\nfor {\n\txs = append(xs, make([]byte, 1<<20))\n}",
                     # writes its memory, so that it is resident
                     "import \"bytes\"\nvar xs [][]byte\nfor {\n\txs = append(xs, bytes.Repeat([]byte{1}, 1<<20))\n}"):
            crossed, peak = [], [0]
            done = threading.Event()

            def watch():
                while not done.is_set():
                    r = self.rss()
                    peak[0] = max(peak[0], r)
                    if r > self.LIMIT and not crossed:
                        crossed.append(time.time())
                    time.sleep(0.002)

            th = threading.Thread(target=watch)
            th.start()
            t0 = time.time()
            msg_id = self.kc.execute(cell)
            try:
                reply = shell_reply(self.kc, msg_id, timeout=30)
            finally:
                t1 = time.time()
                done.set()
                th.join()
            collect(self.kc, msg_id)
            content = reply["content"]
            self.assertEqual(content["status"], "error", content)
            self.assertEqual(content["ename"], "MemoryLimit", content)
            self.assertIn("over the kernel's limit of 286.1 MiB", content["evalue"])
            self.assertLess(t1 - t0, 10)
            if crossed:
                # RSS crosses a little after the Go heap does.
                self.assertLess(t1 - crossed[0], 2.0)
            time.sleep(0.1)
            rss1 = self.rss()
            print("\n  memory limit: reply %.0f ms after the cell started, %s ms after RSS crossed the limit;"
                  " RSS %.0f MiB before, peak %.0f MiB, %.0f MiB after" % (
                      (t1 - t0) * 1e3, "%.0f" % ((t1 - crossed[0]) * 1e3) if crossed else "-",
                      rss0 / 2**20, peak[0] / 2**20, rss1 / 2**20))
            self.assertLess(rss1, rss0 + 64 * 2**20, "RSS stays high after the stopped cell")
            self.assertEqual(self.text_result("kept"), "41")
            self.assertEqual(self.text_result("len(xs)"), "0")
            self.assertEqual(self.text_result("kept * 2"), "82")


class RestartTests(KernelCase):
    def test_restart(self):
        self.text_result("lost := 1\n0")
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=TIMEOUT)
        self.assertTrue(self.km.is_alive())
        reply, _ = self.run_cell("lost")
        self.assertEqual(reply["content"]["status"], "error", "state must not survive a restart")
        reply, _ = self.run_cell("1")
        self.assertEqual(reply["content"]["execution_count"], 2)


if __name__ == "__main__":
    unittest.main()
