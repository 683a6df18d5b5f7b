"""The newcomer's demo and the traffic simulators it runs (chat turns and feedback with an A/B
test and drift, a dispatch model's predictions and outcomes). They sit on top of everything else
and nothing but the CLI, tests and benchmarks imports them; the ground modules (settings, topics,
the Kafka client layer, the local broker) stay in :mod:`continuum`.

Import from the modules: :mod:`continuum.demo.run` (the demo), :mod:`continuum.demo.chat` and
:mod:`continuum.demo.dispatch` (the simulators)."""
