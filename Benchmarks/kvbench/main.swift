// kvbench: kernel, model and policy benchmarks.
print("kvbench: not yet implemented")
