// Displays go out as they are made, with their text/plain.
nb.Display(nb.Markdown("# title"))
fmt.Println("between")
nb.DisplayWithID("bar", nb.HTML("<progress value=0>"))
nb.Update("bar", nb.HTML("<progress value=1>"))
errors.New("an error value")
// Output:
// [display] # title
// between
// [display bar] <progress value=0>
// [update bar] <progress value=1>
// an error value
