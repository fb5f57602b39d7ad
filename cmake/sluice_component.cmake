# sluice_component(NAME SOURCES ... DEPS ...): one static library per component folder, with the
# project's warnings applied to our own code only.
set(SLUICE_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
    -Wimplicit-fallthrough -Wformat=2)

function(sluice_warnings target)
  target_compile_options(${target} PRIVATE ${SLUICE_WARNINGS})
  if(SLUICE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

function(sluice_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  sluice_warnings(${name})
endfunction()
