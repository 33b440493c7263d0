"""What the control panel tells the controller about an environment outside its rollouts:
its hosts changed, or it was deleted."""
