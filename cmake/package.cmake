# The Debian package (CPack, DEB generator): `cpack -G DEB` in the build directory, after the
# build. Installs under /usr, the configuration at /etc/sluice/sluice.toml (a conffile), and
# runs packaging/debian/{postinst,prerm,postrm}: the user comes from systemd-sysusers (or
# useradd where systemd is absent) and nothing is enabled or started.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sluice)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "sluice")
set(CPACK_PACKAGE_CONTACT "sluice maintainers <sluice@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Log and event agent, Flume-compatible")
set(CPACK_PACKAGE_DESCRIPTION
    "sluice follows files, runs commands and receives Avro (Flume), HTTP and stdin input, buffers
in memory or LMDB, and delivers to Kafka, Avro, HTTP, DataHub, InfluxDB line protocol, TCP and
files with failover and load balancing; SQL windows aggregate on the agent.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# DESTDIR-style staging under the /usr prefix, so that the install code can put the
# configuration at the absolute /etc/sluice.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.invalid/sluice")
# Depends from the binary's libraries (dpkg-shlibdeps, in dpkg-dev), plus what the maintainer
# scripts run (passwd: useradd where systemd-sysusers is absent). Without dpkg-shlibdeps, the
# Debian 12 packages of the libraries the binary links.
find_program(SLUICE_DPKG_SHLIBDEPS dpkg-shlibdeps)
# The libraries loaded on first use (SLUICE_LAZY_LINK, lib/core/lazy_link.cc) are not in the
# binary's NEEDED entries, so dpkg-shlibdeps cannot see them: they are listed here.
set(SLUICE_LAZY_DEPENDS "")
if(SLUICE_LAZY_LINK)
  string(CONCAT SLUICE_LAZY_DEPENDS
         ", libcurl4 (>= 7.16.3), liblmdb0 (>= 0.9.7), libpcre2-8-0 (>= 10.32), "
         "librdkafka1 (>= 1.5.0), libssl3 (>= 3.0.0), libzstd1 (>= 1.5.2), zlib1g (>= 1:1.2.0)")
endif()
# With SLUICE_STATIC_CXX, simdjson is loaded on first use too (and brings libstdc++6 and
# libgcc-s1, its own dependencies); libstdc++, libgcc, spdlog, fmt, toml++, libuv and
# http-parser are in the binary.
if(SLUICE_STATIC_CXX)
  string(APPEND SLUICE_LAZY_DEPENDS ", libsimdjson14 (>= 2.0.1)")
endif()
if(SLUICE_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd${SLUICE_LAZY_DEPENDS}")
elseif(SLUICE_STATIC_CXX)
  message(STATUS "dpkg-shlibdeps not found: the .deb lists Debian 12's library packages")
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd, libc6 (>= 2.34)${SLUICE_LAZY_DEPENDS}")
else()
  message(STATUS "dpkg-shlibdeps not found: the .deb lists Debian 12's library packages")
  string(CONCAT CPACK_DEBIAN_PACKAGE_DEPENDS
         "passwd, libc6 (>= 2.34), libstdc++6 (>= 11), libgcc-s1 (>= 3.0), libcurl4 (>= 7.16.3), "
         "libfmt9 (>= 9.1.0+ds1), libhttp-parser2.9 (>= 2.7.1), liblmdb0 (>= 0.9.7), "
         "libpcre2-8-0 (>= 10.32), librdkafka1 (>= 1.5.0), libsimdjson14 (>= 2.0.1), "
         "libspdlog1.10, libssl3 (>= 3.0.0), libtomlplusplus3 (>= 3.2.0), "
         "libuv1 (>= 1.20.2), libzstd1 (>= 1.5.2), zlib1g (>= 1:1.2.0)")
endif()
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
