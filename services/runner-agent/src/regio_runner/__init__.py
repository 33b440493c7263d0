"""Runner agent: runs an environment's containers on its host through the Docker Engine."""
