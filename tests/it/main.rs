mod queue_conformance;
