//! Real memcached processes for the tests (filled in with the memcached tests).
