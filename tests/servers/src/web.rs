//! nginx and php-fpm on loopback ports: filled in by the web-server work.
