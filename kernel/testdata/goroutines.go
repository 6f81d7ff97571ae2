// Goroutines and channels work; a panicking goroutine is reported, not fatal.
results := make(chan int, 3)
for i := 1; i <= 3; i++ {
	v := i
	go func() { results <- v * v }()
}
sum := 0
for i := 0; i < 3; i++ {
	sum += <-results
}
sum
//---
done := make(chan struct{})
go func() {
	defer close(done)
	var m map[string]int
	m["x"] = 1
}()
<-done
time.Sleep(10 * time.Millisecond)
"still alive"
// Output:
// 14
// [stderr] panic in a goroutine (recovered by gopeft, the kernel goes on): assignment to entry in nil map
// still alive
