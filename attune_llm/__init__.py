"""Legacy import location, kept so old code keeps working; use :mod:`attune.memory`."""
