"""The stream: validating and classifying micro-batches (Faust-free), the Faust worker around them, topics, the
embedded broker, feeding files into Kafka, and hot-swapping adapters. It reaches the store only through the sink
and lookup protocols declared here; the services plug the ClickHouse ones in."""
