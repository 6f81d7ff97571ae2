package peft

// SetExchangeDirs turns renameat2(RENAME_EXCHANGE) on or off (off: the
// rename-aside path of other systems) and returns the previous setting.
func SetExchangeDirs(on bool) bool { old := exchangeDirs; exchangeDirs = on; return old }
