mod queue_redis;
