"""Robot-learning datasets: episodes recorded from the PyBullet world and the LeRobot v3 layout."""
