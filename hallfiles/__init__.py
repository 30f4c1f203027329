"""Reading the hall's YAML files (scenes, tasks, robot packages): bounded, every problem exact.

:mod:`hallfiles.limits` caps sizes, alias expansion and nesting before anything is built;
:mod:`hallfiles.yaml_reader` reads a mapping with the line of every key and turns validation
errors into ``FILE:LINE: KEY.PATH: reason`` lines. The lowest room: it knows no hall.
"""
