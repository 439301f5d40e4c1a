//! Taking a partition's fetched messages many at a time.
//!
//! rdkafka's `PartitionQueue::poll` hands over one message per call, and
//! every call reads the clock (twice) and takes the queue's lock: measured
//! with `perf` on a Kafka → alerts + archive run, a third of the reader
//! thread was `clock_gettime`. librdkafka's `rd_kafka_consume_batch_queue`
//! moves up to N ready messages out under one lock, without waiting; this
//! module is the only place that calls it (rdkafka's `bindings`).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as sys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

/// A handle on one partition's fetch queue.
pub struct BatchQueue<C: ConsumerContext + 'static> {
    queue: NonNull<sys::rd_kafka_queue_t>,
    /// Popped messages, destroyed before the next pop.
    popped: Vec<*mut sys::rd_kafka_message_t>,
    /// Keeps the client (which owns the queue) alive as long as the handle.
    _consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka queues are thread-safe (every operation takes the
// queue's lock), and the popped messages are owned by this handle alone.
unsafe impl<C: ConsumerContext + 'static> Send for BatchQueue<C> {}

impl<C: ConsumerContext + 'static> BatchQueue<C> {
    /// A handle on the fetch queue of `topic`/`partition`. The consumer
    /// must read that partition on its own queue (`split_partition_queue`,
    /// which stops librdkafka forwarding it to the consumer's main queue)
    /// and keep that queue for as long as this handle is used.
    pub fn new(consumer: Arc<BaseConsumer<C>>, topic: &str, partition: i32) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives (kept
        // in the handle); the call returns a new reference or null.
        let queue =
            unsafe { sys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), partition) };
        Some(BatchQueue { queue: NonNull::new(queue)?, popped: Vec::new(), _consumer: consumer })
    }

    /// Moves up to `max` ready messages out of the queue, without waiting,
    /// and returns them in order (offset and payload, or the error the
    /// queue delivered in a message's place). They are freed on the next
    /// call or when the handle is dropped.
    pub fn pop(&mut self, max: usize) -> impl Iterator<Item = Result<(u64, &[u8]), RDKafkaErrorCode>> {
        self.free();
        self.popped.reserve(max);
        // SAFETY: the buffer has room for `max` pointers; librdkafka writes
        // at most that many and returns how many (or -1 on error).
        let n = unsafe { sys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, self.popped.as_mut_ptr(), max) };
        // SAFETY: the first `n` entries were just written.
        unsafe { self.popped.set_len(usize::try_from(n).unwrap_or(0)) };
        self.popped.iter().map(|&m| {
            // SAFETY: each pointer is a valid message until `free`, which
            // needs `&mut self`, so not while this iterator borrows it.
            let m = unsafe { &*m };
            if m.err != sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(m.err.into());
            }
            let payload: &[u8] = match NonNull::new(m.payload.cast::<u8>()) {
                // SAFETY: librdkafka's payload pointer and length describe
                // one buffer owned by the message.
                Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), m.len) },
                None => &[],
            };
            Ok((u64::try_from(m.offset).unwrap_or(0), payload))
        })
    }

    fn free(&mut self) {
        for m in self.popped.drain(..) {
            // SAFETY: each message was handed to us by librdkafka and is
            // destroyed exactly once.
            unsafe { sys::rd_kafka_message_destroy(m) };
        }
    }
}

impl<C: ConsumerContext + 'static> Drop for BatchQueue<C> {
    fn drop(&mut self) {
        self.free();
        // SAFETY: the reference obtained in `new`, released once.
        unsafe { sys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}
