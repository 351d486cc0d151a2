"""Many runs: plans (a grid of values, a folder of photos), reports, and the executors that
run them (here, or on Ray)."""
