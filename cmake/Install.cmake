# Installs the C++ library as a CMake package:
#   find_package(rnncore CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE rnncore::rnncore)
# The package records where Eigen (and OpenMP, when used) came from, and finds them again for
# the consumer with find_dependency.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(RNNCORE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/rnncore" CACHE STRING
    "Where rnncoreConfig.cmake is installed, relative to the prefix")

install(TARGETS rnncore_kernels EXPORT rnncoreTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY cpp/include/rnncore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(EXPORT rnncoreTargets NAMESPACE rnncore:: DESTINATION ${RNNCORE_INSTALL_CMAKEDIR})

# Recorded for the config file.
set(RNNCORE_EIGEN_DIR "${Eigen3_DIR}")
if(RNNCORE_OPENMP AND OpenMP_CXX_FOUND)
  set(RNNCORE_USES_OPENMP ON)
else()
  set(RNNCORE_USES_OPENMP OFF)
endif()
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/rnncoreConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/rnncoreConfig.cmake
  INSTALL_DESTINATION ${RNNCORE_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  ${CMAKE_CURRENT_BINARY_DIR}/rnncoreConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rnncoreConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/rnncoreConfigVersion.cmake
        DESTINATION ${RNNCORE_INSTALL_CMAKEDIR})
