clipscale_test(metrics_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_test.cc
               DEPS clipscale_core LABELS "unit" TIMEOUT 60)
# Cases that skip where the system lacks /dev/full or pseudo-terminals.
clipscale_test_case(metrics_test full_disk LABELS "unit" TIMEOUT 60 FILTER
  "JsonlWriterTest.AFullDiskIsAStickyStatusNotACrash:MetricsLoggerTest.FlushReportsASinkErrorAndStillFlushesTheOthers")
clipscale_test_case(metrics_test pty FILTER "ProgressTest.IsTerminalTellsAPseudoTerminalFromAFile"
                    LABELS "unit" TIMEOUT 60)
clipscale_test(metrics_tensorboard_test
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_tensorboard_test.cc
               DEPS clipscale_core LABELS "unit;parity" TIMEOUT 120)
