package viz

import (
	"testing"

	"github.com/gopeft/gopeft/internal/cputime"
)

// ReportCPU is reportCPU, for the benchmarks of package viz_test.
var ReportCPU = reportCPU

// reportCPU reports the process's CPU time (user + system) per operation as
// "cpu-ms/op", next to the wall time: on a machine shared with other jobs
// the wall time also counts waiting for a core. Use: defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := cputime.Process()
	return func() {
		b.ReportMetric(float64((cputime.Process()-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}
