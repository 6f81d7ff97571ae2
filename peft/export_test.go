package peft

// Test helpers of this package that its external tests (package peft_test,
// which may import the method packages) use too.
var (
	TestMatrix    = testMatrix
	TestGPTConfig = testGPTConfig
	MaxAbsDiff    = maxAbsDiff
	TestTokens    = testTokens
)
