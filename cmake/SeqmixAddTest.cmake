# seqmix_add_test(<name> LABEL cpu|gpu|multigpu [slow] SOURCES ... LIBS ...)
#
# One GoogleTest executable; every TEST in it becomes its own ctest test (discovered when ctest
# runs, so building never needs a GPU), carrying the label(s). A test that calls GTEST_SKIP is
# reported by ctest as skipped, not passed (GoogleTest's discovery sets the skip regex itself).
function(seqmix_add_test name)
  cmake_parse_arguments(T "" "" "LABEL;SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} seqmix_testing GTest::gtest
                                        seqmix_warnings)
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS "${T_LABEL}")
endfunction()
