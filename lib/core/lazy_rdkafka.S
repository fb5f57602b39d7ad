/* librdkafka.so.1, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN rdkafka, "librdkafka.so.1"
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_destroy
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_new
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_set
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_set_dr_msg_cb
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_set_error_cb
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_set_log_cb
SLUICE_LAZY_SYM rdkafka, rd_kafka_conf_set_opaque
SLUICE_LAZY_SYM rdkafka, rd_kafka_destroy
SLUICE_LAZY_SYM rdkafka, rd_kafka_err2name
SLUICE_LAZY_SYM rdkafka, rd_kafka_err2str
SLUICE_LAZY_SYM rdkafka, rd_kafka_error_code
SLUICE_LAZY_SYM rdkafka, rd_kafka_error_destroy
SLUICE_LAZY_SYM rdkafka, rd_kafka_error_string
SLUICE_LAZY_SYM rdkafka, rd_kafka_fatal_error
SLUICE_LAZY_SYM rdkafka, rd_kafka_metadata
SLUICE_LAZY_SYM rdkafka, rd_kafka_metadata_destroy
SLUICE_LAZY_SYM rdkafka, rd_kafka_name
SLUICE_LAZY_SYM rdkafka, rd_kafka_new
SLUICE_LAZY_SYM rdkafka, rd_kafka_poll
SLUICE_LAZY_SYM rdkafka, rd_kafka_produceva
SLUICE_LAZY_SYM rdkafka, rd_kafka_purge
SLUICE_LAZY_SYM rdkafka, rd_kafka_queue_destroy
SLUICE_LAZY_SYM rdkafka, rd_kafka_queue_get_main
SLUICE_LAZY_SYM rdkafka, rd_kafka_queue_io_event_enable
SLUICE_LAZY_SYM rdkafka, rd_kafka_test_fatal_error
SLUICE_LAZY_SYM rdkafka, rd_kafka_topic_destroy
SLUICE_LAZY_SYM rdkafka, rd_kafka_topic_new
SLUICE_LAZY_END rdkafka
